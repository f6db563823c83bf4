/**
 * What `syncpi init` does (cli/init.ts only declares the command, so other commands never load
 * the YAML writer, the loader and the prompts): writes a valid appliance.yaml, asking questions
 * on a terminal or taking flags. The file is validated with the same loader as every other
 * command before it is put in place.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { Document } from 'yaml';
import { normaliseDeviceId } from '../config/device-id.js';
import { loadConfig } from '../config/load.js';
import { DEVICE_NAME_EXPECTED, DEVICE_NAME_RE } from '../config/schema.js';
import * as v from '../config/validators.js';
import { UserError } from '../util/errors.js';
import { packageRoot } from '../util/paths.js';

export interface InitAnswers {
  hostname: string;
  timezone: string;
  user: string;
  sshKeys: string[];
  driveUuid?: string;
  driveLabel?: string;
  driveFs: string;
  panelNetworks: string[];
  tunnelOnly: boolean;
  wifi?: { country: string; ssid: string; psk?: string };
  devices?: { id: string; name: string }[];
  folders?: { id: string; path: string; type: 'sendreceive' | 'sendonly' | 'receiveonly'; devices: string[]; readers: string[] }[];
}

/** Where the wizard keeps the Wi-Fi passphrase: its own file (mode 0600) beside the config, which names it. */
export function wifiPskFile(out: string): string {
  return join(dirname(out), `${basename(out).replace(/\.(ya?ml)$/i, '')}.wifi-psk`);
}

export interface InitFlags {
  out: string;
  force?: boolean;
  hostname?: string;
  timezone?: string;
  user?: string;
  sshKey?: string[];
  driveUuid?: string;
  driveLabel?: string;
  driveFs?: string;
  panelNetwork?: string[];
  tunnelOnly?: boolean;
}


export function renderAppliance(a: InitAnswers, pskFile?: string): string {
  const doc = new Document({
    system: {
      hostname: a.hostname,
      timezone: a.timezone,
      user: { name: a.user, ssh_keys: a.sshKeys },
      ...(a.wifi
        ? { wifi: { country: a.wifi.country, networks: [{ ssid: a.wifi.ssid, ...(a.wifi.psk !== undefined && pskFile ? { psk: { file: basename(pskFile) } } : {}) }] } }
        : {}),
    },
    sync: {
      private: true,
      devices: a.devices ?? [],
      folders: (a.folders ?? []).map((f) => ({ id: f.id, path: f.path, type: f.type, devices: f.devices, ...(f.readers.length ? { readers: f.readers } : {}) })),
    },
    panel: a.tunnelOnly
      ? { listen: '127.0.0.1:8384', tunnel_only: true }
      : { listen: '0.0.0.0:8384', allowed_networks: a.panelNetworks },
    ...(a.driveUuid || a.driveLabel
      ? { drive: { ...(a.driveUuid ? { uuid: a.driveUuid } : { label: a.driveLabel }), mount: '/srv/sync', fs: a.driveFs } }
      : {}),
    hardening: { firewall: 'deny', unattended_upgrades: true },
  });
  for (const key of ['devices', 'readers']) {
    (a.folders ?? []).forEach((_, i) => {
      const list = doc.getIn(['sync', 'folders', i, key], true) as { flow?: boolean } | undefined;
      if (list) list.flow = true;
    });
  }
  doc.commentBefore = ` yaml-language-server: $schema=${join(packageRoot(), 'schema', 'appliance.schema.json')}\n syncpi appliance: edit, then run \`syncpi plan\` to see what it makes.\n Add devices with \`syncpi share add\`, or under sync.devices and sync.folders.`;
  return doc.toString({ lineWidth: 0 });
}

function readKeyFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UserError(`--ssh-key ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? e}); expected a public key file such as ~/.ssh/id_ed25519.pub`);
  }
  const keys = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const k of keys) {
    const problem = v.checkSshPublicKey(k);
    if (problem) throw new UserError(`--ssh-key ${path}: expected ${problem}`);
  }
  if (keys.length === 0) throw new UserError(`--ssh-key ${path}: the file holds no key; expected a public key file such as ~/.ssh/id_ed25519.pub`);
  return keys;
}

function check(flag: string, value: string, fn: (s: string) => string | null): string {
  const problem = fn(value);
  if (problem) throw new UserError(`${flag} ${JSON.stringify(value)}: expected ${problem}`);
  return value;
}

function defaultKeyFile(): string | undefined {
  for (const name of ['id_ed25519.pub', 'id_ecdsa.pub', 'id_rsa.pub']) {
    const p = join(homedir(), '.ssh', name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

async function ask(flags: InitFlags): Promise<InitAnswers> {
  const { input, select, confirm } = await import('@inquirer/prompts');
  const validate = (fn: (s: string) => string | null) => (s: string) => {
    const p = fn(s.trim());
    return p ? `Expected ${p}` : true;
  };
  const hostname = (await input({ message: 'Hostname of the Pi', default: flags.hostname ?? 'syncpi', validate: validate(v.checkHostname) })).trim();
  const localZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const timezone = (await input({ message: 'Time zone', default: flags.timezone ?? (localZone || 'UTC'), validate: validate(v.checkTimezone) })).trim();
  const user = (await input({ message: 'User to log in as (SSH keys only)', default: flags.user ?? 'pi', validate: validate(v.checkUserName) })).trim();
  const keyFile = (await input({
    message: 'Public SSH key file',
    default: flags.sshKey?.[0] ?? defaultKeyFile() ?? '',
    validate: (s) => {
      try {
        readKeyFile(s.trim());
        return true;
      } catch (e) {
        return (e as Error).message;
      }
    },
  })).trim();
  const wifi = await askWifi();
  const devices = await askDevices();
  const folders = await askFolders(devices.map((d) => d.name));
  const { findDrives } = await import('./init-drives.js');
  const found = await findDrives();
  const driveBy = await select<string>({
    message: `External drive${found.length ? ' (plug it in, then pick it)' : ' (none found on this machine: plug it in and run init again, or type its label)'}`,
    choices: [
      ...found.map((d, i) => ({ name: d.title, value: `found:${i}` })),
      { name: 'enter a label by hand (e.g. SYNCDRIVE)', value: 'label' },
      { name: 'by UUID (lsblk -o NAME,UUID)', value: 'uuid' },
      { name: 'no drive for now', value: 'none' },
    ],
  });
  let driveUuid: string | undefined;
  let driveLabel: string | undefined;
  let driveFs = 'ext4';
  const picked = driveBy.startsWith('found:') ? found[Number(driveBy.slice(6))]! : undefined;
  if (picked) {
    driveUuid = picked.uuid;
    driveLabel = picked.label;
    driveFs = picked.fs;
  } else if (driveBy !== 'none') {
    if (driveBy === 'uuid') driveUuid = (await input({ message: 'Filesystem UUID', validate: validate(v.checkUuidOrFsId) })).trim();
    else driveLabel = (await input({ message: 'Filesystem label', default: 'SYNCDRIVE', validate: validate(v.checkFsLabel) })).trim();
    driveFs = await select({ message: 'Filesystem', choices: ['ext4', 'exfat', 'ntfs', 'vfat', 'btrfs', 'xfs'].map((x) => ({ name: x, value: x })) });
  }
  const tunnelOnly = await confirm({ message: 'Keep the web panel reachable only through an SSH tunnel?', default: false });
  let panelNetworks: string[] = [];
  if (!tunnelOnly) {
    const nets = await input({ message: 'Networks allowed to open the panel (CIDR, comma-separated)', default: '192.168.0.0/16', validate: (s) => {
      for (const n of s.split(',').map((x) => x.trim()).filter(Boolean)) {
        const p = v.checkCidr(n);
        if (p) return `${n}: expected ${p}`;
      }
      return true;
    } });
    panelNetworks = nets.split(',').map((x) => x.trim()).filter(Boolean);
  }
  return { hostname, timezone, user, sshKeys: readKeyFile(keyFile), driveUuid, driveLabel, driveFs, panelNetworks, tunnelOnly, wifi, devices, folders };
}

const problemOr = (p: string | null): string | true => (p ? `Expected ${p}` : true);

async function askWifi(): Promise<InitAnswers['wifi']> {
  const { input, confirm, password } = await import('@inquirer/prompts');
  if (!(await confirm({ message: 'Connect the Pi to Wi-Fi?', default: false }))) return undefined;
  const country = (await input({ message: 'Wi-Fi country (two letters, e.g. DE)', validate: (s) => problemOr(v.checkCountry(s.trim())) })).trim();
  const ssid = await input({ message: 'Wi-Fi network name (SSID)', validate: (s) => (s && Buffer.byteLength(s) <= 32 && !v.hasControlChars(s) ? true : 'Expected a network name of 1–32 bytes on one line') });
  const psk = await password({ message: 'Wi-Fi passphrase (empty for an open network; kept in its own file, never in the YAML)', mask: '*', validate: (s) => (s === '' ? true : problemOr(v.checkWifiPsk(s))) });
  return { country, ssid, ...(psk ? { psk } : {}) };
}

async function askDevices(): Promise<NonNullable<InitAnswers['devices']>> {
  const { input } = await import('@inquirer/prompts');
  const devices: NonNullable<InitAnswers['devices']> = [];
  for (let i = 0; i < 64; i++) {
    const pasted = await input({
      message: `Device ${i + 1} to sync with: paste its ID (Syncthing: Actions → Show ID), or leave empty to finish`,
      validate: (s) => {
        if (s.trim() === '') return true;
        const r = normaliseDeviceId(s);
        if ('problem' in r) return `Expected ${r.problem}`;
        return devices.some((d) => d.id === r.id) ? `Expected another device: this one is already added as ${devices.find((d) => d.id === r.id)!.name}` : true;
      },
    });
    if (pasted.trim() === '') break;
    const id = (normaliseDeviceId(pasted) as { id: string }).id;
    const name = (await input({
      message: `Name for ${id.slice(0, 7)}`,
      validate: (s) => (!DEVICE_NAME_RE.test(s.trim()) ? `Expected ${DEVICE_NAME_EXPECTED}` : devices.some((d) => d.name === s.trim()) ? 'Expected a name not given yet' : true),
    })).trim();
    devices.push({ id, name });
  }
  return devices;
}

async function askFolders(names: string[]): Promise<NonNullable<InitAnswers['folders']>> {
  const { input, select, checkbox } = await import('@inquirer/prompts');
  const folders: NonNullable<InitAnswers['folders']> = [];
  for (let i = 0; i < 64; i++) {
    const id = (await input({
      message: `Folder ${i + 1} to sync: its ID (the same on every device, e.g. photos), or leave empty to finish`,
      validate: (s) => (s.trim() === '' ? true : !/^[A-Za-z0-9._-]{1,64}$/.test(s.trim()) ? 'Expected a folder ID of letters, digits and . _ -' : folders.some((f) => f.id === s.trim()) ? 'Expected a folder ID not given yet' : true),
    })).trim();
    if (id === '') break;
    const path = (await input({ message: `Path of ${id} on the drive (relative to the drive's mount)`, default: id, validate: (s) => (/^[\p{L}\p{N} ._+@,=-]+(\/[\p{L}\p{N} ._+@,=-]+)*$/u.test(s.trim()) && !s.split('/').some((x) => x === '.' || x === '..') ? true : 'Expected a relative path such as photos or family/photos') })).trim();
    const type = await select<'sendreceive' | 'sendonly' | 'receiveonly'>({
      message: `How the Pi holds ${id}`,
      choices: [
        { name: 'send and receive (the usual)', value: 'sendreceive' },
        { name: 'receive only (a backup: the Pi never sends changes of its own)', value: 'receiveonly' },
        { name: 'send only (the Pi\'s copy is the master)', value: 'sendonly' },
      ],
    });
    const devices = names.length ? await checkbox({ message: `Devices that sync ${id} both ways (space to pick, enter to go on)`, choices: names.map((n) => ({ name: n, value: n })) }) : [];
    const rest = names.filter((n) => !devices.includes(n));
    const readers = rest.length ? await checkbox({ message: `Devices that receive ${id} read-only (nothing they change comes back)`, choices: rest.map((n) => ({ name: n, value: n })) }) : [];
    folders.push({ id, path, type, devices, readers });
  }
  return folders;
}

function fromFlags(flags: InitFlags): InitAnswers {
  if (flags.driveUuid && flags.driveLabel) throw new UserError('--drive-uuid and --drive-label: expected only one of them');
  return {
    hostname: check('--hostname', flags.hostname ?? 'syncpi', v.checkHostname),
    timezone: check('--timezone', flags.timezone ?? 'UTC', v.checkTimezone),
    user: check('--user', flags.user ?? 'pi', v.checkUserName),
    sshKeys: flags.sshKey!.flatMap(readKeyFile),
    ...(flags.driveUuid ? { driveUuid: check('--drive-uuid', flags.driveUuid, v.checkUuidOrFsId) } : {}),
    ...(flags.driveLabel ? { driveLabel: check('--drive-label', flags.driveLabel, v.checkFsLabel) } : {}),
    driveFs: flags.driveFs ?? 'ext4',
    panelNetworks: (flags.panelNetwork ?? []).map((n) => check('--panel-network', n, v.checkCidr)),
    tunnelOnly: !!flags.tunnelOnly,
  };
}

/** A secret file: created 0600 under a temp name, then renamed, so it is never readable by others or half-written. */
function writePrivate(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export async function runInit(flags: InitFlags): Promise<void> {
  const out = resolve(flags.out);
  if (existsSync(out) && !flags.force) throw new UserError(`${flags.out} exists; expected a new file name, or --force to overwrite it`);
  if (flags.driveFs && !['ext4', 'exfat', 'ntfs', 'vfat', 'btrfs', 'xfs'].includes(flags.driveFs)) {
    throw new UserError(`--drive-fs ${JSON.stringify(flags.driveFs)}: expected one of ext4, exfat, ntfs, vfat, btrfs, xfs`);
  }
  let answers: InitAnswers;
  if (flags.sshKey?.length) answers = fromFlags(flags);
  else if (process.stdin.isTTY && process.stdout.isTTY) answers = await ask(flags);
  else {
    throw new UserError('no terminal to ask questions on; expected the answers as flags: --ssh-key FILE (required) and optionally --hostname, --timezone, --user, --drive-uuid or --drive-label, --drive-fs, --panel-network CIDR, --tunnel-only');
  }
  const pskFile = answers.wifi?.psk !== undefined ? wifiPskFile(out) : undefined;
  if (pskFile && existsSync(pskFile) && !flags.force) throw new UserError(`${pskFile} exists; expected a new config name, or --force to overwrite it`);
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, renderAppliance(answers, pskFile), { mode: 0o644 });
  try {
    loadConfig(tmp);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  if (pskFile) writePrivate(pskFile, `${answers.wifi!.psk!}\n`);
  renameSync(tmp, out);
  if (pskFile) process.stdout.write(`wrote ${pskFile} (the Wi-Fi passphrase, mode 0600: keep it out of version control)\n`);
  process.stdout.write(`wrote ${flags.out}\nnext: syncpi plan ${flags.out}   (then: syncpi build ${flags.out} --out out/)\n`);
}
