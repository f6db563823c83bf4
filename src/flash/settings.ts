/**
 * Per-card settings: values that differ between cards flashed from one image (hostname, SSH
 * key, Wi-Fi) go onto the boot (FAT) partition. Usually into a small key=value file, which the
 * image's syncpi-firstboot unit applies once on first boot (templates/firstboot/firstboot.sh) and then
 * deletes. On a Raspberry Pi OS base, where rpi-imager puts them: into cloud-init's seed when the
 * base boots with cloud-init (trixie-based, told by the seed on the boot partition;
 * cloud-init.ts), into firstrun.sh when it boots with raspberrypi-sys-mods' firstboot
 * (bookworm-based, told by cmdline.txt; firstrun.ts).
 *
 * Every value is validated here (bad input: exit 2 before anything is written) and again on
 * the Pi, where the file is parsed as data, never sourced. The file goes onto the card with
 * mtools at the partition's byte offset, so nothing has to be mounted.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MTOOLS_ENV, tool } from '../util/tool.js';
import { Failure, UserError } from '../util/errors.js';
import { META_DATA, NETWORK_CONFIG, USER_DATA, renderNetworkConfig, renderUserData, withRegdom } from './cloud-init.js';
import { FIRSTRUN, renderFirstrun, withFirstrun } from './firstrun.js';
import { FIRSTBOOT_INIT } from '../image/pios.js';

export const SETTINGS_FILE = 'syncpi-firstboot.txt';

export interface CardSettingsInput {
  hostname?: string;
  sshKey?: string[];
  wifiSsid?: string;
  wifiPskFile?: string;
  wifiCountry?: string;
}

export interface CardSettings {
  hostname?: string;
  sshKeys: string[];
  wifi?: { ssid: string; psk: string; country?: string };
  wifiCountry?: string;
}

const HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const KEY_TYPES = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
];
const CONTROL = /[\x00-\x1f\x7f]/;

export function validHostname(h: string): boolean {
  return HOSTNAME.test(h);
}

/** One public key line: a known type, base64 key, optional printable comment. */
export function validSshKey(line: string): boolean {
  if (CONTROL.test(line)) return false;
  const [type, blob, ...rest] = line.split(' ');
  if (!type || !KEY_TYPES.includes(type) || !blob || !/^[A-Za-z0-9+/]+={0,3}$/.test(blob)) return false;
  return rest.join(' ').length <= 200;
}

export function validPsk(psk: string): boolean {
  return /^[\x20-\x7e]{8,63}$/.test(psk) || /^[0-9a-fA-F]{64}$/.test(psk);
}

export function validSsid(ssid: string): boolean {
  const n = Buffer.byteLength(ssid, 'utf8');
  return n >= 1 && n <= 32 && !CONTROL.test(ssid);
}

async function readUserFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read ${what} ${path}: ${(e as { code?: string }).code ?? (e as Error).message}`);
  }
}

/** Validate the flags (reading the key and PSK files); undefined when no setting was given. */
export async function loadCardSettings(input: CardSettingsInput): Promise<CardSettings | undefined> {
  const s: CardSettings = { sshKeys: [] };
  let any = false;
  if (input.hostname !== undefined) {
    if (!validHostname(input.hostname)) {
      throw new UserError(`--hostname "${input.hostname}" is not a valid host name: 1-63 letters, digits and inner hyphens (e.g. pi-kitchen)`);
    }
    s.hostname = input.hostname;
    any = true;
  }
  for (const file of input.sshKey ?? []) {
    const text = await readUserFile(file, '--ssh-key file');
    const lines = text.split('\n').map((l) => l.replace(/\r$/, '').trim());
    let found = 0;
    for (const [i, line] of lines.entries()) {
      if (!line || line.startsWith('#')) continue;
      if (!validSshKey(line)) {
        throw new UserError(`${file}:${i + 1}: not an OpenSSH public key line (expected "TYPE BASE64 [comment]", TYPE one of ${KEY_TYPES.join(', ')}; give the .pub file, not the private key)`);
      }
      if (!s.sshKeys.includes(line)) s.sshKeys.push(line);
      found++;
    }
    if (found === 0) throw new UserError(`${file}: no public key in this file`);
    any = true;
  }
  if (input.wifiCountry !== undefined) {
    if (!/^[A-Z]{2}$/.test(input.wifiCountry)) throw new UserError(`--wifi-country "${input.wifiCountry}" is not a two-letter country code in capitals (e.g. DE, GB, US)`);
    s.wifiCountry = input.wifiCountry;
    any = true;
  }
  if ((input.wifiSsid === undefined) !== (input.wifiPskFile === undefined)) {
    throw new UserError('--wifi-ssid and --wifi-psk-file go together: give both (the PSK is read from a file so it never appears in the process list)');
  }
  if (input.wifiSsid !== undefined && input.wifiPskFile !== undefined) {
    if (!validSsid(input.wifiSsid)) throw new UserError(`--wifi-ssid must be 1-32 bytes without control characters`);
    const psk = (await readUserFile(input.wifiPskFile, '--wifi-psk-file')).replace(/\r?\n$/, '');
    if (!validPsk(psk)) {
      throw new UserError(`${input.wifiPskFile}: the Wi-Fi passphrase must be 8-63 printable ASCII characters (or 64 hex digits) on one line`);
    }
    if (!s.wifiCountry) throw new UserError('--wifi-country is needed with --wifi-ssid: the radio stays off until the country is set (e.g. --wifi-country DE)');
    s.wifi = { ssid: input.wifiSsid, psk, country: s.wifiCountry };
    any = true;
  }
  return any ? s : undefined;
}

/** The file's text; one key=value per line, values already validated (no newlines). */
export function renderSettings(s: CardSettings): string {
  const lines = ['# Per-card settings written by `syncpi flash`; applied once on first boot, then deleted.'];
  if (s.hostname) lines.push(`hostname=${s.hostname}`);
  for (const k of s.sshKeys) lines.push(`ssh_key=${k}`);
  if (s.wifiCountry) lines.push(`wifi_country=${s.wifiCountry}`);
  if (s.wifi) lines.push(`wifi_ssid=${s.wifi.ssid}`, `wifi_psk=${s.wifi.psk}`);
  return lines.join('\n') + '\n';
}

/** Keys (not values: the PSK is secret) for the user's summary. */
export function summarize(s: CardSettings): string {
  const parts: string[] = [];
  if (s.hostname) parts.push(`hostname ${s.hostname}`);
  if (s.sshKeys.length) parts.push(`${s.sshKeys.length} SSH key${s.sshKeys.length > 1 ? 's' : ''}`);
  if (s.wifi) parts.push(`Wi-Fi "${s.wifi.ssid}"`);
  else if (s.wifiCountry) parts.push(`Wi-Fi country ${s.wifiCountry}`);
  return parts.join(', ');
}

export interface Partition {
  index: number;
  /** Byte offset and size. */
  start: number;
  size: number;
  fat: boolean;
}

const FAT_MBR_TYPES = new Set([0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e]);
const FAT_GPT_TYPES = new Set(['ebd0a0a2-b9e5-4433-87c0-68b6b72699c7', 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b']);

function guid(b: Buffer, off: number): string {
  const h = (s: number, e: number, le: boolean): string => {
    const part = Buffer.from(b.subarray(off + s, off + e));
    return (le ? part.reverse() : part).toString('hex');
  };
  return `${h(0, 4, true)}-${h(4, 6, true)}-${h(6, 8, true)}-${h(8, 10, false)}-${h(10, 16, false)}`;
}

/**
 * Partitions from the start of a disk (MBR, or GPT behind a protective MBR). `head` must hold
 * the first 34 sectors for GPT (512-byte sectors, as SD cards have).
 */
export function parsePartitions(head: Buffer): Partition[] {
  if (head.length < 512 || head[510] !== 0x55 || head[511] !== 0xaa) return [];
  const out: Partition[] = [];
  for (let i = 0; i < 4; i++) {
    const e = 446 + i * 16;
    const type = head[e + 4]!;
    if (type === 0xee && head.subarray(512, 520).toString('latin1') === 'EFI PART') {
      const entriesLba = Number(head.readBigUInt64LE(512 + 72));
      const count = head.readUInt32LE(512 + 80);
      const esize = head.readUInt32LE(512 + 84);
      for (let k = 0; k < count; k++) {
        const o = entriesLba * 512 + k * esize;
        if (o + esize > head.length) break;
        const t = guid(head, o);
        if (t === '00000000-0000-0000-0000-000000000000') continue;
        const first = Number(head.readBigUInt64LE(o + 32));
        const last = Number(head.readBigUInt64LE(o + 40));
        out.push({ index: k + 1, start: first * 512, size: (last - first + 1) * 512, fat: FAT_GPT_TYPES.has(t) });
      }
      return out;
    }
    const lba = head.readUInt32LE(e + 8);
    const sectors = head.readUInt32LE(e + 12);
    if (type === 0 || sectors === 0) continue;
    out.push({ index: i + 1, start: lba * 512, size: sectors * 512, fat: FAT_MBR_TYPES.has(type) });
  }
  return out;
}

/** Volume label from a FAT boot sector (FAT32 keeps it at 0x47, FAT12/16 at 0x2b). */
export function fatLabel(bootSector: Buffer): string | undefined {
  if (bootSector.length < 512 || bootSector[510] !== 0x55 || bootSector[511] !== 0xaa) return undefined;
  if (bootSector.subarray(0x52, 0x57).toString('latin1') === 'FAT32') return bootSector.subarray(0x47, 0x52).toString('latin1').trim();
  if (bootSector.subarray(0x36, 0x39).toString('latin1') === 'FAT') return bootSector.subarray(0x2b, 0x36).toString('latin1').trim();
  return undefined;
}

/** The boot partition: the FAT partition labelled bootfs, else the first FAT partition. */
export async function findBootPartition(readAt: (offset: number, length: number) => Promise<Buffer>): Promise<Partition | undefined> {
  const parts = parsePartitions(await readAt(0, 34 * 512)).filter((p) => p.fat);
  for (const p of parts) {
    if (fatLabel(await readAt(p.start, 512))?.toLowerCase() === 'bootfs') return p;
  }
  return parts[0];
}

const mtool = (cmd: string, args: string[]): Promise<string> => tool(cmd, args, { env: MTOOLS_ENV });

/** Where a card's settings go: syncpi's own file, the base's cloud-init seed, or firstrun.sh. */
export type SettingsFormat = 'syncpi' | 'cloud-init' | 'firstrun';

export async function settingsFormat(device: string, offset: number): Promise<SettingsFormat> {
  const img = `${device}@@${offset}`;
  const names = (await mtool('mdir', ['-b', '-i', img, '::/']).catch(() => ''))
    .split('\n')
    .map((l) => l.trim().replace(/^::\//, '').toLowerCase());
  // pi-gen puts meta-data and user-data there
  if (names.includes(META_DATA) && names.includes(USER_DATA)) return 'cloud-init';
  if (!names.includes('cmdline.txt')) return 'syncpi';
  const cmdline = await mtool('mtype', ['-i', img, '::/cmdline.txt']);
  return cmdline.split(/\s+/).includes(FIRSTBOOT_INIT) ? 'firstrun' : 'syncpi';
}

/** The files `s` puts on a partition of `format`, by name; cmdline.txt is edited, given its text. */
export async function settingsFiles(format: SettingsFormat, s: CardSettings, cmdline: () => Promise<string>): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  if (format === 'syncpi') return files.set(SETTINGS_FILE, renderSettings(s));
  if (format === 'firstrun') return files.set(FIRSTRUN, renderFirstrun(renderSettings(s), SETTINGS_FILE)).set('cmdline.txt', withFirstrun(await cmdline()));
  files.set(USER_DATA, renderUserData(s));
  const net = renderNetworkConfig(s);
  if (net) files.set(NETWORK_CONFIG, net);
  // what rpi-imager does too: the radio's country before the driver loads
  if (s.wifiCountry) files.set('cmdline.txt', withRegdom(await cmdline(), s.wifiCountry));
  return files;
}

/** Put the settings into the FAT partition at `offset` of `device`, then read each file back. */
export async function writeSettings(device: string, offset: number, s: CardSettings): Promise<SettingsFormat> {
  const img = `${device}@@${offset}`;
  const format = await settingsFormat(device, offset);
  const files = await settingsFiles(format, s, () => mtool('mtype', ['-i', img, '::/cmdline.txt']));
  const dir = await mkdtemp(join(tmpdir(), 'syncpi-settings-'));
  try {
    for (const [name, text] of files) {
      const file = join(dir, name);
      await writeFile(file, text, { mode: 0o600 });
      await mtool('mcopy', ['-o', '-i', img, file, `::/${name}`]);
      const back = await mtool('mtype', ['-i', img, `::/${name}`]);
      if (back.trim() !== text.trim()) throw new Failure(`${name} on ${device} does not read back as written`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return format;
}
