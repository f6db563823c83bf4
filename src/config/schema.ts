/**
 * appliance.yaml: the one schema. Everything a user can write is declared here with its default,
 * so the JSON Schema that editors use and the validation the CLI does can never disagree.
 * Cross-field rules (folder paths inside the drive, device references) live in the final refine.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import * as v from './validators.js';
import { baseSupport, MODEL_IDS } from '../hardware/models.js';
import { checkUsbQuirk, USB_QUIRKS_MAX, usbQuirksValue } from '../hardware/usb-quirks.js';
import { checkWebAccess, DEFAULT_WEB_LISTEN } from './web-access.js';
import { folderPath, hasUnixOwners, NO_HARD_LINKS, ownDir, readonlyFolderId } from './drive-layout.js';

/**
 * Folder that relative file references in the config resolve against. Set by the loader for the
 * duration of one parse; zod transforms have no other way to receive it.
 */
let referenceDir = process.cwd();
export function withReferenceDir<T>(dir: string, fn: () => T): T {
  const prev = referenceDir;
  referenceDir = dir;
  try {
    return fn();
  } finally {
    referenceDir = prev;
  }
}

export function resolveLocalPath(p: string): string {
  if (p === '~' || p.startsWith('~/')) return resolve(homedir(), p.slice(2));
  return resolve(referenceDir, p);
}

function shaped(check: (s: string) => string | null, opts: { max?: number } = {}) {
  return z
    .string()
    .max(opts.max ?? 4096)
    .superRefine((s, ctx) => {
      const problem = check(s);
      if (problem) ctx.addIssue({ code: 'custom', message: `expected ${problem}`, input: s });
    });
}

/** Free text that ends up inside generated files: one line, no control characters. */
const label = (max = 128) =>
  z
    .string()
    .min(1)
    .max(max)
    .superRefine((s, ctx) => {
      if (v.hasControlChars(s)) ctx.addIssue({ code: 'custom', message: 'expected one line of text without control characters', input: s });
    });

/** Where folders live when there is no drive section: the one place besides its home the daemon may write. */
export const DEFAULT_DRIVE_MOUNT = '/srv/sync';

/** Networks for one nft interval set: each a valid prefix (overlaps are merged by the set's auto-merge). */
const cidrList = () => z.array(shaped(v.checkCidr)).max(64).default([]);

/** Where a secret comes from: never a plaintext value that would sit in a shared YAML file. */
const secretRef = z.union([
  z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name').describe('Read the secret from this environment variable.') }),
  z.strictObject({ file: label(1024).describe('Read the secret from this file (relative to the config file); trailing newline ignored.') }),
]);

const bcryptHash = () => z.string().regex(/^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/, 'expected a bcrypt hash ($2a$/$2b$/$2y$, cost 04–31, 53 characters after it)');

const passwordRef = z.union([
  z.strictObject({
    bcrypt: bcryptHash().describe('A bcrypt hash of the panel password (e.g. from `syncpi hash-password`).'),
  }),
  ...secretRef.options,
]);

/** A public key file on the machine running syncpi; read at load time so errors point at the entry. */
const sshKeyFile = z
  .strictObject({ file: label(1024).describe('Public key file (~ and paths relative to the config file work).') })
  .transform((ref, ctx) => {
    const path = resolveLocalPath(ref.file);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: `expected a readable public key file; ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, input: ref.file });
      return z.NEVER;
    }
    const keys = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const k of keys) {
      const problem = v.checkSshPublicKey(k);
      if (problem) {
        ctx.addIssue({ code: 'custom', message: `expected ${problem} in ${path}`, input: ref.file });
        return z.NEVER;
      }
    }
    if (keys.length === 0) {
      ctx.addIssue({ code: 'custom', message: `expected at least one key in ${path}`, input: ref.file });
      return z.NEVER;
    }
    return keys;
  });

export const BaseSchema = z
  .union([
    z.strictObject({
      debian: z
        .strictObject({
          suite: z.enum(['trixie', 'bookworm']).default('trixie').describe('Debian release to build from.'),
          arch: z.enum(['arm64', 'armhf']).default('arm64').describe('arm64 for Pi 3/4/5 and Zero 2; armhf for 32-bit.'),
          mirror: z.url({ protocol: /^https?$/ }).optional().describe('Debian mirror URL; default: the build machine\'s apt sources.'),
        })
        .default({ suite: 'trixie', arch: 'arm64' }),
    }),
    z.strictObject({
      image: z.strictObject({
        source: label(2048).describe('Path or http(s) URL of a Raspberry Pi OS Lite image (.img, .img.xz or .zip).'),
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits').describe('SHA-256 of the file named by source.'),
        arch: z.enum(['arm64', 'armhf']).default('arm64'),
      }),
    }),
  ])
  .describe('What the image starts from: Debian packages (default) or a stock Raspberry Pi OS Lite image.');

const SystemSchema = z.strictObject({
  hostname: shaped(v.checkHostname).default('syncpi'),
  timezone: shaped(v.checkTimezone).default('UTC'),
  locale: shaped(v.checkLocale).default('en_US.UTF-8'),
  keyboard: z
    .string()
    .regex(/^[a-z]{2,8}(\([a-z0-9_]{1,32}\))?$/, 'expected an XKB layout such as us, de, gb or fr(bepo)')
    .default('us'),
  user: z.strictObject({
    name: shaped(v.checkUserName).default('pi'),
    ssh_keys: z
      .array(z.union([shaped(v.checkSshPublicKey, { max: 16384 }), sshKeyFile]))
      .min(1, 'expected at least one SSH public key: SSH is key-only')
      .max(64)
      .transform((keys) => keys.flat())
      .describe('Public keys: a key line, or {file: ~/.ssh/id_ed25519.pub}.'),
    sudo: z.boolean().default(true),
  }),
  wifi: z
    .strictObject({
      country: shaped(v.checkCountry),
      networks: z
        .array(
          z.strictObject({
            ssid: label(32).refine((s) => Buffer.byteLength(s) <= 32, 'expected an SSID of at most 32 bytes'),
            psk: secretRef.optional().describe('WPA2/WPA3 passphrase; omit for an open network.'),
            hidden: z.boolean().default(false),
          }),
        )
        .max(16)
        .default([]),
    })
    .optional(),
});

export const STRIP_PROFILES = ['headless', 'none'] as const;

const PackagesSchema = z
  .strictObject({
    profile: z.enum(STRIP_PROFILES).default('headless').describe('headless: remove desktop, X11, GUI applications and the like.'),
    remove: z.array(shaped(v.checkPackageName)).max(500).default([]),
    keep: z.array(shaped(v.checkPackageName)).max(500).default([]),
    install: z.array(shaped((s) => (s.includes('*') || s.includes('?') ? 'a package name without globs' : v.checkPackageName(s)))).max(500).default([]),
  })
  .default({ profile: 'headless', remove: [], keep: [], install: [] });

/**
 * What the appliance keeps of a file another device changed or deleted. Staggered thins versions
 * out with age (every 30 s for the first hour, hourly for a day, daily for a month, weekly after),
 * which suits an always-on peer; none must be written out.
 */
const VERSIONING_TYPES = ['staggered', 'trashcan', 'simple', 'none'] as const;
/** Which settings each type reads, with their defaults. */
const VERSIONING_DEFAULTS = {
  staggered: { max_age_days: 365, cleanup_interval: 3600 },
  trashcan: { cleanout_days: 365, cleanup_interval: 3600 },
  simple: { keep: 5, cleanout_days: 365, cleanup_interval: 3600 },
  none: {},
} as const;
export type Versioning =
  | { type: 'staggered'; max_age_days: number; cleanup_interval: number }
  | { type: 'trashcan'; cleanout_days: number; cleanup_interval: number }
  | { type: 'simple'; keep: number; cleanout_days: number; cleanup_interval: number }
  | { type: 'none' };
const days = () => z.number().int().min(0).max(36500).optional();
export const VersioningSchema = z
  .strictObject({
    type: z.enum(VERSIONING_TYPES).describe('staggered: fewer versions as they age; trashcan: the last version of each; simple: the last `keep` versions; none: nothing kept.'),
    max_age_days: days().describe('staggered: days the oldest version is kept (0: forever; default 365).'),
    keep: z.number().int().min(1).max(10000).optional().describe('simple: versions kept of each file (default 5).'),
    cleanout_days: days().describe('trashcan, simple: days a version is kept (0: forever; default 365).'),
    cleanup_interval: z.number().int().min(60).max(86400 * 7).optional().describe('Seconds between clean-outs of old versions (default 3600).'),
  })
  .superRefine((v, ctx) => {
    const allowed = Object.keys(VERSIONING_DEFAULTS[v.type]);
    for (const key of Object.keys(v)) {
      if (key === 'type' || allowed.includes(key)) continue;
      ctx.addIssue({ code: 'custom', path: [key], message: `expected ${allowed.length ? `only ${allowed.join(', ')}` : 'no other setting'} with type ${v.type} (${key} belongs to ${VERSIONING_TYPES.filter((t) => key in VERSIONING_DEFAULTS[t]).join(', ')})`, input: (v as Record<string, unknown>)[key] });
    }
  })
  .transform((v): Versioning => ({ ...VERSIONING_DEFAULTS[v.type], ...v }) as Versioning);
export const DEFAULT_VERSIONING: Versioning = { type: 'staggered', max_age_days: 365, cleanup_interval: 3600 };

const FolderSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected a folder ID of letters, digits and . _ - (the same ID on every device)'),
  label: label(64).optional(),
  path: label(1024).describe('Absolute path on the drive, or relative to drive.mount.'),
  type: z.enum(['sendreceive', 'sendonly', 'receiveonly']).default('sendreceive'),
  devices: z.array(label(64)).max(64).default([]).describe('Names (or IDs) of devices from sync.devices to share with.'),
  readers: z.array(label(64)).max(64).default([]).describe('Devices that receive a read-only copy: nothing they change reaches this folder.'),
  versioning: VersioningSchema.optional().describe('Overrides sync.versioning for this folder.'),
  rescan_interval: z.number().int().min(0).max(86400 * 7).default(3600),
  watch: z.boolean().default(true),
});

export const DEVICE_NAME_RE = /^[A-Za-z0-9._ -]{1,64}$/;
export const DEVICE_NAME_EXPECTED = 'a device name of letters, digits, spaces and . _ - (at most 64)';

const DeviceSchema = z.strictObject({
  id: shaped(v.checkDeviceId),
  name: z.string().regex(DEVICE_NAME_RE, `expected ${DEVICE_NAME_EXPECTED}`),
  addresses: z
    .array(shaped(v.checkDeviceAddress, { max: 300 }))
    .min(1)
    .max(16)
    .default(['dynamic']),
  introducer: z.boolean().default(false),
});

const SyncSchema = z.strictObject({
  daemon: z.literal('syncthing').default('syncthing'),
  private: z.boolean().default(true).describe('No global discovery, relays, NAT traversal, usage reporting or auto-upgrade.'),
  listen: z
    .array(shaped(v.checkSyncListen, { max: 100 }))
    .min(1)
    .max(8)
    .default(['tcp://0.0.0.0:22000', 'quic://0.0.0.0:22000']),
  local_discovery: z.boolean().default(true).describe('Announce on the LAN so devices find the Pi without addresses.'),
  devices: z.array(DeviceSchema).max(256).default([]),
  folders: z.array(FolderSchema).max(256).default([]),
  versioning: VersioningSchema.default(DEFAULT_VERSIONING).describe('What the appliance keeps of files other devices change or delete; each folder may override it.'),
  min_disk_free: z.number().int().min(1).max(50).default(2).describe('Percent of the drive kept free: below it Syncthing stops pulling instead of failing mid-file.'),
  readers_interval: z.number().int().min(10).max(86400).default(60).describe('Seconds between updates of the read-only copies (folders\' readers).'),
  max_user_watches: z.number().int().min(8192).max(16_777_216).default(524288),
  accept_vulnerable_gui: z.boolean().default(false).describe('Allow a panel beyond loopback with a Syncthing older than 1.23.5.'),
});

const PanelSchema = z
  .strictObject({
    listen: shaped(v.checkListen).default('0.0.0.0:8384'),
    tls: z
      .union([
        z.literal('generate').describe('Syncthing makes a per-device certificate on first boot.'),
        z.strictObject({ cert: label(1024), key: label(1024) }).describe('PEM files (relative to the config file) to install.'),
      ])
      .default('generate'),
    user: z.string().regex(/^[A-Za-z0-9._-]{1,32}$/, 'expected a user name of letters, digits and . _ -').default('admin'),
    password: passwordRef.optional().describe('Omitted: one is generated, shown once, and kept in the secrets file.'),
    allowed_networks: cidrList().describe('Networks that may reach the panel; empty: none beyond loopback.'),
    tunnel_only: z.boolean().default(false).describe('Keep the panel on loopback; reach it with `syncpi panel HOST`.'),
  })
  .default({ listen: '0.0.0.0:8384', tls: 'generate', user: 'admin', allowed_networks: [], tunnel_only: false });

export const DRIVE_FS = ['ext4', 'btrfs', 'xfs', 'exfat', 'vfat', 'ntfs'] as const;

const DriveSchema = z
  .strictObject({
    uuid: shaped(v.checkUuidOrFsId).transform(v.canonicalFsUuid).optional().describe('As blkid shows it; written in the case of its /dev/disk/by-uuid link (lowercase UUIDs, uppercase FAT/exFAT/NTFS serials).'),
    label: shaped(v.checkFsLabel).optional(),
    mount: shaped(v.checkDriveMount).default(DEFAULT_DRIVE_MOUNT).describe('Where the drive mounts: a new directory, e.g. under /srv or /mnt; never a system directory, its parent, or inside one.'),
    fs: z.enum(DRIVE_FS).default('ext4'),
    options: z.array(z.string().regex(/^[A-Za-z0-9_.=-]{1,64}$/, 'expected a mount option like noatime or commit=60')).max(32).default([]),
    timeout: z.number().int().min(1).max(600).default(30).describe('Seconds to wait for the drive at boot before giving up (boot continues; a drive that comes later still starts the sync daemon).'),
    spin_down: z.number().int().min(0).max(86400).default(0).describe('Spin the disk down after this many idle seconds (0: never).'),
    usb_quirks: z
      .array(shaped(checkUsbQuirk, { max: 64 }))
      .max(12)
      .default([])
      .describe('usb-storage.quirks entries for the kernel command line, VID:PID:FLAGS (e.g. 174c:55aa:u: this USB-SATA bridge without UAS); IDs as lsusb shows them. Takes effect after a reboot.'),
  })
  .superRefine((d, ctx) => {
    if ((d.uuid === undefined) === (d.label === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'expected exactly one of uuid or label to identify the drive', input: d });
    }
    d.options.forEach((o, i) => {
      const problem = v.checkDriveOption(o);
      if (problem) ctx.addIssue({ code: 'custom', path: ['options', i], message: `expected ${problem}`, input: o });
    });
    const seen = new Map<string, number>();
    d.usb_quirks.forEach((q, i) => {
      const id = q.slice(0, 9);
      if (seen.has(id)) ctx.addIssue({ code: 'custom', path: ['usb_quirks', i], message: `expected one entry per device: ${id} is already usb_quirks[${seen.get(id)}] (the kernel uses only the first)`, input: q });
      else seen.set(id, i);
    });
    if (usbQuirksValue(d.usb_quirks).length > USB_QUIRKS_MAX) {
      ctx.addIssue({ code: 'custom', path: ['usb_quirks'], message: `expected at most ${USB_QUIRKS_MAX} characters in all (joined by commas): the kernel refuses a longer usb-storage.quirks`, input: d.usb_quirks });
    }
    const uuidProblem = d.uuid === undefined ? null : v.checkUuidForFs(d.uuid, d.fs);
    if (uuidProblem) ctx.addIssue({ code: 'custom', path: ['uuid'], message: `expected ${uuidProblem} (or a different fs)`, input: d.uuid });
    if (d.label !== undefined && d.label.length > v.FS_LABEL_MAX[d.fs]!) {
      ctx.addIssue({ code: 'custom', path: ['label'], message: `expected a label of at most ${v.FS_LABEL_MAX[d.fs]} characters: ${d.fs} stores no longer one, so this drive would never be found`, input: d.label });
    }
  });

const ServiceSchema = z.strictObject({
  description: label(200),
  template: z.string().regex(/^[a-z0-9][a-z0-9-]{0,47}$/, 'expected a template name (a file templates/services/NAME.service.hbs)').default('command'),
  exec: z.array(label(4096)).min(1).max(256).optional().describe('Command and arguments (argv); the first is an absolute path.'),
  values: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/), z.union([label(4096).or(z.literal('')), z.number(), z.boolean()])).default({}).describe('Template values; the command template passes them as environment variables (one line each).'),
  type: z.enum(['oneshot', 'simple']).default('oneshot').describe('oneshot: runs to completion (stays "active" at boot); simple: a long-running daemon, restarted on failure.'),
  user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/).default('syncthing'),
  schedule: shaped(v.checkSystemdCalendar).optional().describe('systemd OnCalendar= expression; adds a timer.'),
  uses_drive: z.boolean().default(false).describe('Order after the drive\'s mount and require it.'),
  enabled: z.boolean().default(true),
});

const WebAccessSchema = z.strictObject({
  listen: shaped(v.checkListen, { max: 64 }).default(DEFAULT_WEB_LISTEN).describe('Address and port of the HTTPS server (the panel\'s certificate).'),
  folders: z
    .array(z.string().max(64))
    .min(1, 'expected at least one folder ID from sync.folders to serve')
    .max(64)
    .describe('IDs of sync.folders to serve; each is a top-level directory of that name.'),
  read_only: z.boolean().default(true).describe('false: users may also upload, rename and delete in these folders.'),
  users: z
    .array(
      z.strictObject({
        // ':' ends the name in htpasswd and a newline the entry: neither may reach the file.
        name: z.string().regex(/^[A-Za-z0-9._-]{1,32}$/, 'expected a user name of letters, digits and . _ - (at most 32)'),
        bcrypt: bcryptHash().describe('bcrypt hash of the password, e.g. from `htpasswd -nB NAME`.'),
      }),
    )
    .min(1)
    .max(64)
    .optional()
    .describe('Who may log in; omitted: the panel\'s user and password.'),
  allowed_networks: z.array(shaped(v.checkCidr)).max(64).optional().describe('Networks the firewall lets reach the server; omitted: panel.allowed_networks.'),
});


const HardeningSchema = z
  .strictObject({
    ssh: z
      .strictObject({
        port: z.number().int().min(1).max(65535).default(22),
        allow_from: cidrList().describe('Networks allowed to reach SSH; empty: any.'),
      })
      .default({ port: 22, allow_from: [] }),
    firewall: z.enum(['deny', 'off']).default('deny').describe('deny: inbound default deny, except SSH, sync and the panel from allowed networks.'),
    unattended_upgrades: z.boolean().default(true),
    fail2ban: z.boolean().default(false),
  })
  .default({ ssh: { port: 22, allow_from: [] }, firewall: 'deny', unattended_upgrades: true, fail2ban: false });

/** Free space below this share of the storage's size needs attention (status and the alert). */
export const DEFAULT_MIN_FREE_PERCENT = 10;

const HealthSchema = z
  .strictObject({
    min_free_percent: z.number().int().min(1).max(99).default(DEFAULT_MIN_FREE_PERCENT).describe('Free space below this percent of the storage needs attention (syncpi status and the alert).'),
    alert: z
      .strictObject({
        url: shaped(v.checkAlertUrl, { max: 2048 }).optional().describe('POST a JSON object {host, state, problems, time} here when the health changes (curl is installed for it).'),
        command: z.array(label(4096)).min(1).max(64).optional().describe('Run this command (argv; the first an absolute path) as root with the same JSON on its standard input.'),
        interval: z.number().int().min(1).max(1440).default(15).describe('Minutes between checks.'),
      })
      .superRefine((a, ctx) => {
        if (!a.url && !a.command) ctx.addIssue({ code: 'custom', message: 'expected url or command (or both): where the alert goes', input: a });
        if (a.command && !a.command[0]!.startsWith('/')) ctx.addIssue({ code: 'custom', path: ['command', 0], message: 'expected an absolute path to the program, e.g. /usr/local/bin/notify', input: a.command[0] });
      })
      .optional()
      .describe('Check the drive\'s free space, SMART and the power supply on a timer, and report each change of state; off when absent.'),
  })
  .default({ min_free_percent: DEFAULT_MIN_FREE_PERCENT });

const HardwareSchema = z.strictObject({
  models: z
    .array(z.enum(MODEL_IDS))
    .min(1)
    .max(MODEL_IDS.length)
    .describe('Raspberry Pi models the image must boot on (see "Which Pi" in the README); the build fails when the image lacks what one of them needs.'),
});

/** How an rsync key may use its folder: rrsync's -ro, -wo, or neither. */
export const RSYNC_MODES = ['read-only', 'write-only', 'read-write'] as const;

/**
 * A key for rsync over SSH: a bare public key (syncpi writes the restriction in front of it), so
 * a pasted authorized_keys line with its own options is refused rather than half-trusted.
 */
function checkRsyncKey(s: string): string | null {
  if (v.hasControlChars(s)) return 'an OpenSSH public key on one line';
  const problem = v.checkSshPublicKey(s);
  if (!problem) return null;
  const parts = s.trim().split(/\s+/);
  const at = parts.findIndex((_, i) => i > 0 && v.checkSshPublicKey(parts.slice(i).join(' ')) === null);
  if (at > 0) return `a bare public key "TYPE BASE64 [comment]" without an options prefix (got ${JSON.stringify(parts.slice(0, at).join(' ').slice(0, 60))} before the key type): syncpi writes restrict,command=… itself`;
  return problem;
}

const RsyncKeySchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected a key name of letters, digits and . _ - (it becomes the key\'s comment on the Pi)'),
  key: z
    .union([shaped(checkRsyncKey, { max: 16384 }), sshKeyFile.refine((keys) => keys.length === 1, 'expected a file holding exactly one public key (one key per entry)')])
    .transform((k) => (Array.isArray(k) ? k[0]! : k))
    .describe('The public key: a key line, or {file: phone.pub}.'),
  folder: label(1024).describe('The ID of a folder under sync.folders, or that folder\'s path: the key reaches only this folder.'),
  mode: z.enum(RSYNC_MODES).describe('read-only (download), write-only (upload, e.g. phone backups: no listing, no download) or read-write.'),
});

const AccessSchema = z
  .strictObject({
    web: WebAccessSchema.optional().describe('Browser and WebDAV access to chosen folders (rclone serve webdav); off when absent.'),
    rsync: z.array(RsyncKeySchema).max(64).default([]).describe('rsync over SSH into single folders (account syncpi-rsync, each key confined to its folder by rrsync).'),
  })
  .default({ rsync: [] });

export const ConfigSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'expected an image name of lowercase letters, digits and . _ -').optional().describe('Image name; default: the hostname.'),
    base: BaseSchema.default({ debian: { suite: 'trixie', arch: 'arm64' } }),
    templates_dir: label(1024).optional().describe('A folder of templates that override the built-in ones (relative to the config file).'),
    system: SystemSchema,
    packages: PackagesSchema,
    sync: SyncSchema.default({
      daemon: 'syncthing', private: true, listen: ['tcp://0.0.0.0:22000', 'quic://0.0.0.0:22000'], local_discovery: true,
      devices: [], folders: [], versioning: DEFAULT_VERSIONING, min_disk_free: 2, readers_interval: 60, max_user_watches: 524288, accept_vulnerable_gui: false,
    }),
    panel: PanelSchema,
    drive: DriveSchema.optional(),
    services: z
      .record(shaped(v.checkServiceName), ServiceSchema)
      .default({})
      .refine((r) => Object.keys(r).length <= 64, 'expected at most 64 services'),
    hardening: HardeningSchema,
    hardware: HardwareSchema.optional().describe('The boards this appliance is for.'),
    access: AccessSchema,
    health: HealthSchema,
  })
  .superRefine((c, ctx) => {
    const baseFacts = 'debian' in c.base ? { kind: 'debian' as const, arch: c.base.debian.arch, suite: c.base.debian.suite } : { kind: 'image' as const, arch: c.base.image.arch };
    c.hardware?.models.forEach((m, i) => {
      const why = baseSupport(m, baseFacts);
      const base = baseFacts.kind === 'debian' ? `a Debian ${baseFacts.suite} ${baseFacts.arch} base` : `an ${baseFacts.arch} image base`;
      if (why) ctx.addIssue({ code: 'custom', path: ['hardware', 'models', i], message: `expected a model ${base} boots: ${why.reason}; for it, use ${why.alternative}`, input: m });
    });
    const deviceNames = new Set<string>();
    const deviceIds = new Set<string>();
    c.sync.devices.forEach((d, i) => {
      if (deviceNames.has(d.name)) ctx.addIssue({ code: 'custom', path: ['sync', 'devices', i, 'name'], message: `expected a unique device name; "${d.name}" is used twice`, input: d.name });
      if (deviceIds.has(d.id)) ctx.addIssue({ code: 'custom', path: ['sync', 'devices', i, 'id'], message: 'expected a unique device ID; this one is listed twice', input: d.id });
      deviceNames.add(d.name);
      deviceIds.add(d.id);
    });
    const folderIds = new Set<string>();
    const folderPaths: { id: string; path: string }[] = [];
    c.sync.folders.forEach((f, i) => {
      if (folderIds.has(f.id)) ctx.addIssue({ code: 'custom', path: ['sync', 'folders', i, 'id'], message: `expected a unique folder ID; "${f.id}" is used twice`, input: f.id });
      folderIds.add(f.id);
      const deviceOf = (ref: string): string => c.sync.devices.find((d) => d.name === ref)?.id ?? ref;
      const checkRef = (key: 'devices' | 'readers') => (ref: string, j: number) => {
        if (!deviceNames.has(ref) && !deviceIds.has(ref)) {
          const hint = v.didYouMean(ref, [...deviceNames]);
          ctx.addIssue({
            code: 'custom',
            path: ['sync', 'folders', i, key, j],
            message: `expected the name or ID of a device listed under sync.devices${hint ? ` (did you mean "${hint}"?)` : deviceNames.size ? ` (one of: ${[...deviceNames].join(', ')})` : ' (none are listed)'}`,
            input: ref,
          });
        }
      };
      f.devices.forEach(checkRef('devices'));
      f.readers.forEach(checkRef('readers'));
      const writers = new Set(f.devices.map(deviceOf));
      f.readers.forEach((ref, j) => {
        if (writers.has(deviceOf(ref))) ctx.addIssue({ code: 'custom', path: ['sync', 'folders', i, 'readers', j], message: `expected a device that is not also in this folder's devices: "${ref}" would write to the folder it should only read`, input: ref });
      });
      if (f.readers.length && c.drive && (NO_HARD_LINKS as readonly string[]).includes(c.drive.fs)) {
        ctx.addIssue({ code: 'custom', path: ['sync', 'folders', i, 'readers'], message: `expected no readers on a ${c.drive.fs} drive: its read-only copy is made of hard links, which ${c.drive.fs} cannot hold (use ext4, btrfs, xfs or ntfs)`, input: f.readers });
      }
      if (f.readers.length && c.sync.folders.some((o) => o.id === readonlyFolderId(f.id))) {
        ctx.addIssue({ code: 'custom', path: ['sync', 'folders', i, 'readers'], message: `expected no folder with ID ${readonlyFolderId(f.id)}: that ID carries this folder's read-only copy to its readers`, input: f.readers });
      }
      // The storage root is also the only folder the sandboxed daemon may write besides its home.
      const root = c.drive?.mount ?? DEFAULT_DRIVE_MOUNT;
      const path = folderPath(root, f.path);
      const problem = v.checkTargetPath(path, { allowSpaces: true });
      if (problem) {
        ctx.addIssue({ code: 'custom', path: ['sync', 'folders', i, 'path'], message: `expected ${problem}`, input: f.path });
      } else if (!v.isPathInside(path, root)) {
        const why = c.drive ? `on the drive, inside ${root} (a folder off the drive would fill the SD card)` : `inside ${root}, where folders live without a drive section (the only place Syncthing may write)`;
        ctx.addIssue({ code: 'custom', path: ['sync', 'folders', i, 'path'], message: `expected a path ${why}`, input: f.path });
      } else if (path === root) {
        ctx.addIssue({ code: 'custom', path: ['sync', 'folders', i, 'path'], message: `expected a sub-folder of ${root}, not ${root} itself (the folder marker must live ${c.drive ? 'on the drive' : 'inside it'})`, input: f.path });
      } else if (v.isPathInside(path, ownDir(root))) {
        ctx.addIssue({ code: 'custom', path: ['sync', 'folders', i, 'path'], message: `expected a path outside ${ownDir(root)}: syncpi keeps versions and read-only copies there`, input: f.path });
      } else {
        // A folder inside another is synced twice, to both folders' devices.
        const other = folderPaths.find((o) => v.isPathInside(path, o.path) || v.isPathInside(o.path, path));
        if (other) ctx.addIssue({ code: 'custom', path: ['sync', 'folders', i, 'path'], message: `expected a path neither inside nor around folder ${other.id} (${other.path}): its files would be synced twice`, input: f.path });
        folderPaths.push({ id: f.id, path });
      }
    });
    for (const [name, s] of Object.entries(c.services)) {
      if (s.template === 'command' && !s.exec) {
        ctx.addIssue({ code: 'custom', path: ['services', name, 'exec'], message: 'expected exec: the command template needs a command line, e.g. exec: [/usr/bin/du, -sh, /srv/sync]', input: undefined });
      }
      if (s.exec && !s.exec[0]!.startsWith('/')) {
        ctx.addIssue({ code: 'custom', path: ['services', name, 'exec', 0], message: 'expected an absolute path to the program, e.g. /usr/bin/rsync', input: s.exec[0] });
      }
      if (s.schedule && s.type === 'simple') {
        ctx.addIssue({ code: 'custom', path: ['services', name, 'type'], message: 'expected oneshot for a scheduled service (a timer starts it, it runs to completion)', input: s.type });
      }
      if (s.uses_drive && !c.drive) {
        ctx.addIssue({ code: 'custom', path: ['services', name, 'uses_drive'], message: 'expected a drive section: this service uses the drive but none is configured', input: true });
      }
    }
    // bookworm ships Syncthing 1.19.2, older than the GUI fixes of 1.23.5.
    const listen = v.parseListen(c.panel.listen);
    if ('debian' in c.base && c.base.debian.suite === 'bookworm' && !c.panel.tunnel_only && listen && !v.isLoopbackHost(listen.host) && !c.sync.accept_vulnerable_gui) {
      ctx.addIssue({ code: 'custom', path: ['panel', 'listen'], message: 'expected a loopback address or panel.tunnel_only: true: Debian bookworm ships Syncthing 1.19.2, whose panel has known vulnerabilities (fixed in 1.23.5); use trixie, or set sync.accept_vulnerable_gui: true to accept the risk', input: c.panel.listen });
    }
    if (c.panel.tunnel_only && c.panel.allowed_networks.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['panel', 'allowed_networks'], message: 'expected no allowed_networks with tunnel_only: true (the panel stays on loopback)', input: c.panel.allowed_networks });
    }
    // Two daemons on one port: the second never starts (and the firewall rule meant for it opens the first).
    const tcp = new Map<number, string>([[c.hardening.ssh.port, 'hardening.ssh.port']]);
    const udp = new Map<number, string>(c.sync.local_discovery ? [[21027, 'sync.local_discovery (UDP 21027)']] : []);
    const claim = (ports: Map<number, string>, port: number, who: string, path: PropertyKey[], input: unknown) => {
      const other = ports.get(port);
      if (other) ctx.addIssue({ code: 'custom', path, message: `expected a port no other service uses: ${port} is already ${other}'s`, input });
      else ports.set(port, who);
    };
    const panelPort = listen?.port;
    if (panelPort !== undefined) claim(tcp, panelPort, 'panel.listen', ['panel', 'listen'], c.panel.listen);
    const web = c.access.web;
    if (web) {
      const webPort = v.parseListen(web.listen)?.port;
      if (webPort !== undefined) claim(tcp, webPort, 'access.web.listen', ['access', 'web', 'listen'], web.listen);
      for (const issue of checkWebAccess(web, { folderIds: c.sync.folders.map((f) => f.id), firewallOff: c.hardening.firewall === 'off' })) {
        ctx.addIssue({ code: 'custom', path: ['access', 'web', ...issue.path], message: issue.message, input: issue.input });
      }
    }
    c.sync.listen.forEach((l, i) => {
      const p = v.parseSyncListen(l);
      if (!p) return;
      const seen = (p.proto === 'tcp' ? tcp : udp).get(p.port);
      // The same port on two addresses of one protocol (tcp4 and tcp6) is one daemon's, not a clash.
      if (seen?.startsWith('sync.listen')) return;
      claim(p.proto === 'tcp' ? tcp : udp, p.port, `sync.listen[${i}]`, ['sync', 'listen', i], l);
    });
    // Limits nothing enforces are worse than none: they read as protection.
    if (c.hardening.firewall === 'off') {
      for (const [path, list] of [[['panel', 'allowed_networks'], c.panel.allowed_networks], [['hardening', 'ssh', 'allow_from'], c.hardening.ssh.allow_from]] as const) {
        if (list.length > 0) {
          ctx.addIssue({ code: 'custom', path: [...path], message: `expected no ${path.join('.')} with hardening.firewall: off (no firewall would enforce it); set hardening.firewall: deny, or remove ${path.join('.')}`, input: list });
        }
      }
    }
    checkRsyncAccess(c, ctx);
    const names = new Set([c.system.user.name]);
    if (c.services && Object.values(c.services).some((s) => s.user !== 'syncthing' && s.user !== 'root' && !names.has(s.user))) {
      const bad = Object.entries(c.services).find(([, s]) => s.user !== 'syncthing' && s.user !== 'root' && !names.has(s.user))!;
      ctx.addIssue({ code: 'custom', path: ['services', bad[0], 'user'], message: `expected syncthing, root or ${c.system.user.name} (users the appliance creates)`, input: bad[1].user });
    }
  });

/**
 * Each rsync key names one configured folder, by ID or path. Its path goes into a forced command
 * in authorized_keys, where sshd knows no quoting beyond \\": only plain paths qualify. FAT-like
 * drives have no owners or groups to give the upload account its folders and nothing else.
 */
interface RsyncAccessInput {
  drive?: { mount: string; fs: string } | undefined;
  sync: { folders: { id: string; path: string }[] };
  access: { rsync: { name: string; key: string; folder: string }[] };
}
function checkRsyncAccess(c: RsyncAccessInput, ctx: z.RefinementCtx): void {
  const root = c.drive?.mount ?? DEFAULT_DRIVE_MOUNT;
  const abs = (p: string) => folderPath(root, p);
  const names = new Set<string>();
  const keys = new Map<string, string>();
  c.access.rsync.forEach((k, i) => {
    const at = (...rest: PropertyKey[]) => ['access', 'rsync', i, ...rest];
    if (names.has(k.name)) ctx.addIssue({ code: 'custom', path: at('name'), message: `expected a unique key name; "${k.name}" is used twice`, input: k.name });
    names.add(k.name);
    const blob = k.key.trim().split(/\s+/).slice(0, 2).join(' ');
    const other = keys.get(blob);
    // sshd uses the first line a key matches: a second entry for the same key would never apply.
    if (other) ctx.addIssue({ code: 'custom', path: at('key'), message: `expected a key no other entry uses: entry "${other}" has the same key, and sshd would only ever apply the first`, input: k.key });
    else keys.set(blob, k.name);
    if (c.drive && !hasUnixOwners(c.drive.fs)) {
      ctx.addIssue({ code: 'custom', path: at('folder'), message: `expected a drive with owners and groups (ext4, btrfs or xfs) for rsync access: ${c.drive.fs} has none to keep the upload account to its folders`, input: k.folder });
      return;
    }
    const byId = c.sync.folders.find((f) => f.id === k.folder);
    const pathProblem = byId || k.folder.startsWith('/') ? null : v.checkTargetPath(abs(k.folder));
    const byPath = byId ? undefined : c.sync.folders.find((f) => abs(f.path) === abs(k.folder));
    const folder = byId ?? byPath;
    if (!folder) {
      const shape = pathProblem ?? (k.folder.includes('/') ? v.checkTargetPath(abs(k.folder)) : null);
      const ids = c.sync.folders.map((f) => f.id);
      ctx.addIssue({
        code: 'custom',
        path: at('folder'),
        message: shape
          ? `expected ${shape}: the ID or path of a folder under sync.folders`
          : `expected the ID or path of a folder under sync.folders (${ids.length ? `one of: ${ids.join(', ')}` : 'none are listed'})`,
        input: k.folder,
      });
      return;
    }
    const problem = v.checkTargetPath(abs(folder.path));
    if (problem) {
      ctx.addIssue({ code: 'custom', path: at('folder'), message: `expected a folder whose path has only letters, digits and . _ + @ - (it goes into authorized_keys unquoted): folder ${folder.id} is at ${JSON.stringify(abs(folder.path))}`, input: k.folder });
    }
  });
}

export type Config = z.output<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type DriveConfig = NonNullable<Config['drive']>;
export type ServiceConfig = Config['services'][string];
export type WebAccessConfig = NonNullable<Config['access']['web']>;
export type HealthAlertConfig = NonNullable<Config['health']['alert']>;

export function jsonSchema(): unknown {
  const js = z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'urn:syncpi:appliance',
    title: 'syncpi appliance.yaml',
    ...js,
  };
}
