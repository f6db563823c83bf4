/**
 * Which block devices exist and which of them may be overwritten. Discovery is `lsblk --json`;
 * the judgement (`assessDevice`) is a pure function of that data plus a few facts about the
 * image, so every refusal can be reasoned about and tested on its own.
 */
import { readFileSync } from 'node:fs';
import { run } from '../util/run.js';
import { Failure } from '../util/errors.js';
import { formatBytes } from '../util/report.js';

export interface BlockDevice {
  name: string;
  path: string;
  /** "major:minor" */
  majMin: string;
  type: string;
  size: number;
  model: string;
  vendor: string;
  serial: string;
  tran: string;
  removable: boolean;
  hotplug: boolean;
  readOnly: boolean;
  mountpoints: string[];
  fstype: string;
  label: string;
  uuid: string;
  children: BlockDevice[];
}

const COLUMNS = 'NAME,PATH,MAJ:MIN,TYPE,SIZE,MODEL,VENDOR,SERIAL,TRAN,RM,HOTPLUG,RO,FSTYPE,LABEL,UUID';

type Raw = Record<string, unknown> & { children?: Raw[] };

const str = (v: unknown): string => (typeof v === 'string' ? v.trim() : v == null ? '' : String(v).trim());
// lsblk before 2.37 prints "0"/"1" strings; newer versions print JSON booleans
const bool = (v: unknown): boolean => v === true || v === 1 || v === '1';

function normalize(raw: Raw): BlockDevice {
  const mps = Array.isArray(raw.mountpoints) ? raw.mountpoints : [raw.mountpoint];
  return {
    name: str(raw.name),
    path: str(raw.path) || `/dev/${str(raw.name)}`,
    majMin: str(raw['maj:min']),
    type: str(raw.type),
    size: Number(raw.size ?? 0),
    model: str(raw.model),
    vendor: str(raw.vendor),
    serial: str(raw.serial),
    tran: str(raw.tran),
    removable: bool(raw.rm),
    hotplug: bool(raw.hotplug),
    readOnly: bool(raw.ro),
    mountpoints: mps.filter((m): m is string => typeof m === 'string' && m !== ''),
    fstype: str(raw.fstype),
    label: str(raw.label),
    uuid: str(raw.uuid),
    children: (raw.children ?? []).map(normalize),
  };
}

// Linux dev_t encoding (glibc's gnu_dev_major/minor).
export function majMin(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** Every node of the lsblk forest, parents before their children. */
export function allDevices(devices: BlockDevice[]): BlockDevice[] {
  return devices.flatMap((d) => [d, ...allDevices(d.children)]);
}

/**
 * How the device opened now differs from the one checked and confirmed, or undefined when it is
 * the same: its number, size, serial and model. A /dev/sdX name passes to another disk when a card
 * is swapped between the check, the prompt and the open.
 */
export function identityChange(checked: BlockDevice, openedMajMin: string, now: BlockDevice | undefined): string | undefined {
  if (openedMajMin !== checked.majMin) return `it is device ${openedMajMin} now, ${checked.majMin} when checked`;
  if (!now) return `lsblk no longer lists device ${openedMajMin}`;
  for (const k of ['size', 'serial', 'model'] as const) {
    if (now[k] !== checked[k]) return `its ${k} is ${JSON.stringify(now[k])} now, ${JSON.stringify(checked[k])} when checked`;
  }
  return undefined;
}

/** Parse `lsblk --json --bytes` output (exported for tests with recorded output). */
export function parseLsblk(json: string): BlockDevice[] {
  let data: { blockdevices?: Raw[] };
  try {
    data = JSON.parse(json) as { blockdevices?: Raw[] };
  } catch {
    throw new Failure('lsblk printed something that is not JSON');
  }
  return (data.blockdevices ?? []).map(normalize);
}

/** Every whole disk (top-level lsblk node) with its partitions and holders as children. */
export async function listDevices(): Promise<BlockDevice[]> {
  const attempt = async (mountCol: string): Promise<string> =>
    (await run('lsblk', ['--json', '--bytes', '-o', `${COLUMNS},${mountCol}`])).stdout;
  try {
    try {
      return parseLsblk(await attempt('MOUNTPOINTS'));
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') throw e;
      // util-linux before 2.37 knows only the single MOUNTPOINT column
      return parseLsblk(await attempt('MOUNTPOINT'));
    }
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') throw new Failure('lsblk not found: install util-linux');
    throw e instanceof Failure ? e : new Failure(`lsblk failed: ${(e as { shortMessage?: string }).shortMessage ?? String(e)}`);
  }
}

export function* walk(dev: BlockDevice): Generator<BlockDevice> {
  yield dev;
  for (const c of dev.children) yield* walk(c);
}

/** Mount points under which a disk counts as the running system's. */
const SYSTEM_MOUNTS = ['/', '/boot', '/usr', '/var', '/home'];

export function isSystemMount(mp: string): boolean {
  return mp === '[SWAP]' || SYSTEM_MOUNTS.includes(mp) || mp.startsWith('/boot/');
}

export function describe(dev: BlockDevice): string {
  const model = [dev.vendor, dev.model].filter(Boolean).join(' ') || (dev.type === 'loop' ? 'loop device' : 'unknown model');
  return `${dev.path} (${model}, ${formatBytes(dev.size)}${dev.tran ? `, ${dev.tran}` : ''})`;
}

/** Removable in the sense that matters: a card reader or USB stick, not a built-in disk. */
export function looksRemovable(dev: BlockDevice): boolean {
  return dev.removable || dev.hotplug || dev.tran === 'usb' || dev.tran === 'mmc' || /^mmcblk\d+$/.test(dev.name);
}

export interface ImageFacts {
  /** Bytes the image needs on the device. */
  size: number;
  /** "major:minor" of the device holding the image file, and that device's path if known. */
  hostMajMin?: string;
  hostSource?: string;
  /** Real path of the image file (to catch a loop device backed by the image itself). */
  realPath?: string;
}

export interface AssessOptions {
  allowFixed?: boolean;
  unmount?: boolean;
}

export interface Refusal {
  code: 'not-disk' | 'system' | 'image-host' | 'read-only' | 'too-small' | 'mounted' | 'fixed' | 'empty';
  message: string;
}

/** Backing file of a loop device, or undefined. */
export function loopBackingFile(dev: BlockDevice): string | undefined {
  if (dev.type !== 'loop') return undefined;
  try {
    return readFileSync(`/sys/block/${dev.name}/loop/backing_file`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Why `dev` must not be written (first reason only), or undefined when it may be.
 * Order matters: the reasons no flag can override come first.
 */
export function assessDevice(dev: BlockDevice, image: ImageFacts, opts: AssessOptions, backingFile?: string): Refusal | undefined {
  const d = describe(dev);
  if (dev.type !== 'disk' && dev.type !== 'loop') {
    return { code: 'not-disk', message: `${dev.path} is a ${dev.type || 'device'} of another disk, not a whole disk: give the disk itself (see \`syncpi flash --list\`)` };
  }
  const nodes = [...walk(dev)];
  const sys = nodes.flatMap((n) => n.mountpoints.filter(isSystemMount).map((m) => `${n.path} on ${m === '[SWAP]' ? 'swap' : m}`));
  if (sys.length) return { code: 'system', message: `${d} holds the running system (${sys.join(', ')}): refusing to overwrite it` };
  const hosts = nodes.filter(
    (n) => (image.hostMajMin && n.majMin === image.hostMajMin) || (image.hostSource && n.path === image.hostSource),
  );
  if (hosts.length || (image.realPath && backingFile === image.realPath)) {
    return { code: 'image-host', message: `${d} holds the image file itself${hosts.length ? ` (on ${hosts[0]!.path})` : ''}: copy the image elsewhere or pick another device` };
  }
  if (dev.readOnly) return { code: 'read-only', message: `${d} is read-only (is the card's lock switch on?)` };
  if (dev.size === 0) return { code: 'empty', message: `${d} has no medium (size 0): insert the card` };
  if (dev.size < image.size) {
    return { code: 'too-small', message: `${d} is smaller than the image (${formatBytes(image.size)} = ${image.size} bytes needed)` };
  }
  if (!opts.allowFixed && !looksRemovable(dev)) {
    return { code: 'fixed', message: `${d} is not a removable disk: pass --allow-fixed if you really mean it` };
  }
  const mounted = nodes.flatMap((n) => n.mountpoints.map((m) => `${n.path} on ${m}`));
  if (mounted.length && !opts.unmount) {
    return { code: 'mounted', message: `${d} has mounted file systems (${mounted.join(', ')}): unmount them or pass --unmount` };
  }
  return undefined;
}

/** Mount points to unmount before writing (deepest first, so nested mounts go before their parents). */
export function mountpointsOf(dev: BlockDevice): string[] {
  return [...walk(dev)].flatMap((n) => n.mountpoints).sort((a, b) => b.length - a.length);
}
