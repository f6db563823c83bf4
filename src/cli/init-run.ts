/**
 * What `syncpi init` does (cli/init.ts only declares the command, so other commands never load
 * the YAML writer, the loader and the prompts): writes a valid appliance.yaml, asking questions
 * on a terminal or taking flags. The file is validated with the same loader as every other
 * command before it is put in place.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Document } from 'yaml';
import { loadConfig } from '../config/load.js';
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


export function renderAppliance(a: InitAnswers): string {
  const doc = new Document({
    system: {
      hostname: a.hostname,
      timezone: a.timezone,
      user: { name: a.user, ssh_keys: a.sshKeys },
    },
    sync: { private: true, devices: [], folders: [] },
    panel: a.tunnelOnly
      ? { listen: '127.0.0.1:8384', tunnel_only: true }
      : { listen: '0.0.0.0:8384', allowed_networks: a.panelNetworks },
    ...(a.driveUuid || a.driveLabel
      ? { drive: { ...(a.driveUuid ? { uuid: a.driveUuid } : { label: a.driveLabel }), mount: '/srv/sync', fs: a.driveFs } }
      : {}),
    hardening: { firewall: 'deny', unattended_upgrades: true },
  });
  doc.commentBefore = ` yaml-language-server: $schema=${join(packageRoot(), 'schema', 'appliance.schema.json')}\n syncpi appliance: edit, then run \`syncpi plan\` to see what it makes.\n Add devices (sync.devices) and folders (sync.folders) to share files.`;
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
  const driveBy = await select({
    message: 'External drive',
    choices: [
      { name: 'by filesystem label (e.g. SYNCDRIVE)', value: 'label' },
      { name: 'by UUID (lsblk -o NAME,UUID)', value: 'uuid' },
      { name: 'no drive for now', value: 'none' },
    ],
  });
  let driveUuid: string | undefined;
  let driveLabel: string | undefined;
  let driveFs = 'ext4';
  if (driveBy !== 'none') {
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
  return { hostname, timezone, user, sshKeys: readKeyFile(keyFile), driveUuid, driveLabel, driveFs, panelNetworks, tunnelOnly };
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
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, renderAppliance(answers), { mode: 0o644 });
  try {
    loadConfig(tmp);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  renameSync(tmp, out);
  process.stdout.write(`wrote ${flags.out}\nnext: syncpi plan ${flags.out}   (then: syncpi build ${flags.out} --out out/)\n`);
}
