/**
 * The Raspberry Pi OS disk layout: an MBR (DOS) partition table, a FAT32 boot partition labelled
 * "bootfs" mounted at /boot/firmware, and an ext4 root labelled "rootfs". Partitions are
 * referenced as PARTUUID=<disk id>-NN, so the disk id, cmdline.txt, /etc/fstab and the
 * raspi-firmware defaults must always agree.
 */
import { open, truncate, readdir, readFile, writeFile, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MTOOLS_ENV, tool } from '../util/tool.js';
import { Failure } from '../util/errors.js';

export const SECTOR = 512;
/** First partition at 4 MiB, as Raspberry Pi OS does, so the start is aligned for SD erase blocks. */
export const BOOT_START_SECTORS = 8192;
export const BOOT_LABEL = 'bootfs';
export const ROOT_LABEL = 'rootfs';
const MiB = 1024 * 1024;

export interface PartitionInfo {
  start: number; // sectors
  size: number; // sectors
  type: string;
}

export interface DiskInfo {
  diskId: string; // 8 lowercase hex digits
  partitions: PartitionInfo[];
}

export async function readDisk(img: string): Promise<DiskInfo> {
  const json = JSON.parse(await tool('sfdisk', ['--json', img])) as {
    partitiontable: { label: string; id?: string; partitions?: Array<{ start: number; size: number; type: string }> };
  };
  const t = json.partitiontable;
  if (t.label !== 'dos') throw new Failure(`${img}: expected an MBR (dos) partition table, found ${t.label}`);
  const id = (t.id ?? '').replace(/^0x/i, '').toLowerCase().padStart(8, '0');
  return { diskId: id, partitions: (t.partitions ?? []).map((p) => ({ start: p.start, size: p.size, type: p.type })) };
}

export async function setDiskId(img: string, diskId: string): Promise<void> {
  if (!/^[0-9a-f]{8}$/.test(diskId)) throw new Error(`bad disk id ${diskId}`);
  await tool('sfdisk', ['--disk-id', img, `0x${diskId}`]);
}

/** Resize partition `n` (1-based) to `sizeSectors`, or to the end of the file when omitted. */
export async function resizePartition(img: string, n: number, sizeSectors?: number): Promise<void> {
  const spec = sizeSectors === undefined ? ', +\n' : `, ${sizeSectors}\n`;
  await tool('sfdisk', ['--no-reread', '--no-tell-kernel', '-q', '-N', String(n), img], { input: spec });
}

/**
 * Lay out a fresh image from two directory trees without any loop device: the FAT32 is written
 * at its offset by mkfs.vfat and filled with mtools, the ext4 by mke2fs -d.
 */
export async function createImageFromTrees(opts: {
  img: string;
  bootDir: string;
  rootDir: string;
  bootMiB: number;
  rootBytes: number;
  diskId: string;
}): Promise<void> {
  const bootSectors = (opts.bootMiB * MiB) / SECTOR;
  const rootStart = BOOT_START_SECTORS + bootSectors;
  const rootSectors = Math.ceil(opts.rootBytes / MiB) * (MiB / SECTOR);
  const total = (rootStart + rootSectors) * SECTOR;
  const fh = await open(opts.img, 'w');
  await fh.close();
  await truncate(opts.img, total);
  const table = [
    'label: dos',
    `label-id: 0x${opts.diskId}`,
    'unit: sectors',
    '',
    `start=${BOOT_START_SECTORS}, size=${bootSectors}, type=c`,
    `start=${rootStart}, size=${rootSectors}, type=83`,
    '',
  ].join('\n');
  await tool('sfdisk', ['-q', '--no-reread', '--no-tell-kernel', opts.img], { input: table });
  await tool('mkfs.vfat', ['-F', '32', '-n', BOOT_LABEL, '--offset', String(BOOT_START_SECTORS), opts.img, String((bootSectors * SECTOR) / 1024)]);
  const entries = await readdir(opts.bootDir);
  if (entries.length > 0) {
    await tool('mcopy', ['-s', '-p', '-m', '-i', `${opts.img}@@${BOOT_START_SECTORS * SECTOR}`, ...entries.map((e) => join(opts.bootDir, e)), '::/'], { env: MTOOLS_ENV });
  }
  await tool('mkfs.ext4', [
    '-F', '-q', '-L', ROOT_LABEL, '-d', opts.rootDir,
    // a Pi root fs is resized on first boot; these features keep it mountable by older tools too
    '-O', '^orphan_file,^metadata_csum_seed',
    '-E', `offset=${rootStart * SECTOR}`,
    opts.img, `${(rootSectors * SECTOR) / 1024}k`,
  ]);
}

export function partuuid(diskId: string, n: number): string {
  return `${diskId}-${String(n).padStart(2, '0')}`;
}

/**
 * Point every reference to the root and boot partitions at `diskId`: cmdline.txt on the boot
 * partition, /etc/fstab, and /etc/default/raspi-firmware (whose ROOTPART regenerates cmdline.txt
 * on every kernel upgrade on the Pi). Returns the files changed.
 */
export async function fixPartitionRefs(rootDir: string, bootDir: string, diskId: string): Promise<string[]> {
  const changed: string[] = [];
  const rootRef = `PARTUUID=${partuuid(diskId, 2)}`;
  const bootRef = `PARTUUID=${partuuid(diskId, 1)}`;
  const edit = async (path: string, fn: (s: string) => string): Promise<void> => {
    if (!existsSync(path)) return;
    const before = await readFile(path, 'utf8');
    const after = fn(before);
    if (after !== before) {
      const st = await stat(path);
      await writeFile(path, after, { mode: st.mode & 0o7777 });
      changed.push(path);
    }
  };
  await edit(join(bootDir, 'cmdline.txt'), (s) => {
    const line = s.split('\n').find((l) => l.trim()) ?? '';
    // keep the word order the firmware package wrote; replace root= in place or add it
    const words = line.trim().split(/\s+/).filter(Boolean);
    const i = words.findIndex((w) => w.startsWith('root='));
    if (i >= 0) words[i] = `root=${rootRef}`;
    else words.push(`root=${rootRef}`);
    return words.join(' ') + '\n';
  });
  await edit(join(rootDir, 'etc/fstab'), (s) => {
    const lines = s.split('\n').filter((l, i, a) => !(i === a.length - 1 && l === ''));
    let haveRoot = false;
    let haveBoot = false;
    const out = lines.map((l) => {
      const f = l.trim().split(/\s+/);
      if (l.trim().startsWith('#') || f.length < 2) return l;
      if (f[1] === '/') {
        haveRoot = true;
        return [rootRef, ...f.slice(1)].join('\t');
      }
      if (f[1] === '/boot/firmware' || f[1] === '/boot') {
        haveBoot = true;
        return [bootRef, ...f.slice(1)].join('\t');
      }
      return l;
    });
    if (!haveRoot) out.push(`${rootRef}\t/\text4\tdefaults,noatime\t0\t1`);
    if (!haveBoot) out.push(`${bootRef}\t/boot/firmware\tvfat\tdefaults\t0\t2`);
    return out.join('\n') + '\n';
  });
  await edit(join(rootDir, 'etc/default/raspi-firmware'), (s) =>
    /^#?\s*ROOTPART=/m.test(s) ? s.replace(/^#?\s*ROOTPART=.*$/m, `ROOTPART=${rootRef}`) : s + `ROOTPART=${rootRef}\n`,
  );
  return changed;
}

/** Where the boot partition is mounted in this root: /boot/firmware (bookworm and later) or /boot. */
export function bootMountPoint(rootDir: string): string {
  if (existsSync(join(rootDir, 'boot/firmware'))) return '/boot/firmware';
  return '/boot';
}
