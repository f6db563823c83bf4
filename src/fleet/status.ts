/**
 * `syncpi status`: per host, is the sync daemon up, are its folders in sync, is the drive mounted
 * and how much space is free. One command gathers the system facts; the Syncthing REST API is
 * read through the same SSH connection (forwarded to the Pi's loopback), never over the LAN.
 */
import { parseListen } from '../config/validators.js';
import type { Config } from '../config/schema.js';
import { shJoin } from '../util/shell.js';
import { FOLDER_HOLDS, SYNCTHING_API_KEY } from '../plan/features/sync.js';
import { DEFAULT_DRIVE_MOUNT } from '../config/schema.js';
import { bestSmart, freeSpaceLow, powerReport, type PowerReport, type SmartReport } from '../health/smart.js';
import type { ConnectPolicy } from '../targets/ssh-connection.js';
import { connectTo, type HostSpec } from '../provision/host.js';

export interface FolderStatus {
  id: string;
  state: string;
  needFiles: number;
  needBytes: number;
  inSync: boolean;
  /** Why the folder is stopped (Syncthing's own words, e.g. "folder marker missing"), or why it could not be read. */
  error?: string;
  /** Files Syncthing failed to sync in this folder (its folder errors list). */
  fileErrors?: number;
  /** Why syncthing-prepare holds the folder back (a drive or path it was not seeded on). */
  held?: string;
}

export interface HostStatusReport {
  name: string;
  address: string;
  reachable: boolean;
  error?: string;
  daemon?: string;
  drive?: { path: string; mounted: boolean; source?: string; fstype?: string; freeBytes?: number; sizeBytes?: number };
  rootFreeBytes?: number;
  /** The disk under the folders, the storage's free space, the Pi's power supply. */
  health?: {
    smart: SmartReport;
    storage: { path: string; freeBytes?: number; sizeBytes?: number; minFreePercent: number; low: boolean };
    power: PowerReport;
  };
  folders: FolderStatus[];
  ok: boolean;
  roundTrips: number;
}

/**
 * The health part of the facts script. The disk is the whole device under the storage root
 * (the drive's partition's parent); smartctl runs as root (sudo -n) with the auto-detected type,
 * then -d sat (USB bridges), each output base64 on one line. The kernel's count of undervoltage
 * messages is given only when this boot's kernel log is readable at all.
 */
function healthScript(storage: string): string {
  const d = shJoin([storage]);
  return [
    `ls ${d} >/dev/null 2>&1 || true`,
    `set -- $(df -P -B1 ${d} 2>/dev/null | tail -n 1); printf "storesize=%s\\nstorefree=%s\\n" "\${2-}" "\${4-}"`,
    `src=$(findmnt -n -o SOURCE -T ${d} 2>/dev/null | grep -v '^systemd-1$' | tail -n 1)`,
    'printf "storesrc=%s\\n" "$src"',
    'if [ -b "$src" ]; then pk=$(lsblk -n -d -o PKNAME "$src" 2>/dev/null | head -n 1); dev=/dev/${pk:-${src#/dev/}}; printf "disk=%s\\n" "$dev";',
    '  for t in auto sat; do printf "smart=%s\\n" "$(sudo -n smartctl --json -H -A -i -d "$t" "$dev" 2>/dev/null | base64 | tr -d "\\n")"; done; fi',
    'if command -v vcgencmd >/dev/null 2>&1; then printf "throttled=%s\\n" "$(vcgencmd get_throttled 2>/dev/null)"; fi',
    'for h in /sys/class/hwmon/hwmon*; do [ "$(cat "$h/name" 2>/dev/null)" = rpi_volt ] && printf "hwmonalarm=%s\\n" "$(cat "$h/in0_lcrit_alarm" 2>/dev/null)"; done',
    'k=$(journalctl -k -b -q --no-pager 2>/dev/null) && [ -n "$k" ] && printf "kernuv=%s\\n" "$(printf "%s\\n" "$k" | grep -c "Undervoltage detected")"',
    'true',
  ].join('\n');
}

/** Facts script: key=value lines; every path reaches it quoted. */
function factsScript(drive: string | undefined, storage: string): string {
  const lines = [
    'printf "daemon=%s\\n" "$(systemctl is-active syncthing.service 2>/dev/null || true)"',
    'set -- $(df -P -B1 / | tail -n 1); printf "rootfree=%s\\n" "$4"',
    `sed 's/^/hold=/' ${FOLDER_HOLDS} 2>/dev/null || true`,
    // the appliance's own REST key, readable by root only: without sudo, folders show as unknown
    `printf "apikey=%s\\n" "$(sudo -n cat ${SYNCTHING_API_KEY} 2>/dev/null)"`,
  ];
  if (drive) {
    const d = shJoin([drive]);
    // Listing the path triggers the automount, so "mounted" means the drive answered.
    lines.push(
      `ls ${d} >/dev/null 2>&1 || true`,
      `if m=$(findmnt -n -o SOURCE,FSTYPE --mountpoint ${d} 2>/dev/null | grep -v autofs | head -n 1) && [ -n "$m" ]; then printf "drive=mounted %s\\n" "$m"; set -- $(df -P -B1 ${d} | tail -n 1); printf "drivesize=%s\\ndrivefree=%s\\n" "$2" "$4"; else printf "drive=absent\\n"; fi`,
    );
  }
  lines.push(healthScript(storage));
  return lines.join('\n');
}

export async function hostStatus(h: HostSpec, config: Config, policy: ConnectPolicy, opts: { minFreePercent?: number } = {}): Promise<HostStatusReport> {
  const r: HostStatusReport = { name: h.name, address: h.address, reachable: false, folders: [], ok: false, roundTrips: 0 };
  let t;
  try {
    t = await connectTo(h, policy);
    r.reachable = true;
    const drivePath = config.drive?.mount;
    const storage = drivePath ?? DEFAULT_DRIVE_MOUNT;
    const facts = await t.exec(shJoin(['sh', '-c', factsScript(drivePath, storage)]));
    const lines = facts.stdout.split('\n');
    const kv = new Map(lines.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
    const holds = new Map(lines.filter((l) => l.startsWith('hold=')).map((l) => l.slice(5).split('\t')).map(([id, , why]) => [id!, why ?? 'held back'] as const));
    r.daemon = kv.get('daemon') || 'unknown';
    r.rootFreeBytes = Number(kv.get('rootfree')) || undefined;
    const apiKey = kv.get('apikey') || undefined;
    const smartOut = lines.filter((l) => l.startsWith('smart=')).map((l) => Buffer.from(l.slice(6), 'base64').toString('utf8'));
    const src = kv.get('storesrc') ?? '';
    const smart: SmartReport = kv.get('disk')
      ? bestSmart(smartOut)
      : { state: 'unavailable', reason: `no disk to ask: ${storage} is on ${src || 'an unknown file system'}, not a block device` };
    const minFreePercent = opts.minFreePercent ?? config.health.min_free_percent;
    const storeFree = Number(kv.get('storefree')) || undefined;
    const storeSize = Number(kv.get('storesize')) || undefined;
    r.health = {
      smart,
      storage: { path: storage, freeBytes: storeFree, sizeBytes: storeSize, minFreePercent, low: freeSpaceLow(storeFree, storeSize, minFreePercent) },
      power: powerReport({ throttled: kv.get('throttled'), hwmonAlarm: kv.get('hwmonalarm'), kernelUndervoltage: kv.get('kernuv') }),
    };
    if (drivePath) {
      const d = kv.get('drive') ?? 'absent';
      const [state, source, fstype] = d.split(/\s+/);
      r.drive = { path: drivePath, mounted: state === 'mounted', source, fstype, freeBytes: Number(kv.get('drivefree')) || undefined, sizeBytes: Number(kv.get('drivesize')) || undefined };
    }
    if (r.daemon === 'active' && apiKey) {
      const listen = parseListen(config.panel.listen);
      const port = listen?.port ?? 8384;
      for (const f of config.sync.folders) {
        try {
          const res = await t.httpGet(port, `/rest/db/status?folder=${encodeURIComponent(f.id)}`, { 'X-API-Key': apiKey }, 10_000, true);
          if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
          const s = JSON.parse(res.body) as { state?: string; needFiles?: number; needBytes?: number; error?: string };
          const needFiles = s.needFiles ?? 0;
          const needBytes = s.needBytes ?? 0;
          const fs: FolderStatus = { id: f.id, state: s.state ?? '?', needFiles, needBytes, inSync: s.state === 'idle' && needFiles === 0 && needBytes === 0 };
          if (s.error) fs.error = s.error;
          const errs = await t.httpGet(port, `/rest/folder/errors?folder=${encodeURIComponent(f.id)}`, { 'X-API-Key': apiKey }, 10_000, true);
          if (errs.status === 200) {
            const n = ((JSON.parse(errs.body) as { errors?: unknown[] | null }).errors ?? []).length;
            if (n > 0) Object.assign(fs, { fileErrors: n, inSync: false });
          }
          r.folders.push(fs);
        } catch (e) {
          r.folders.push({ id: f.id, state: 'unknown', needFiles: 0, needBytes: 0, inSync: false, error: e instanceof Error ? e.message : String(e) });
        }
      }
    }
    for (const f of config.sync.folders) {
      const why = holds.get(f.id);
      if (why === undefined) continue;
      const known = r.folders.find((x) => x.id === f.id);
      if (known) Object.assign(known, { held: why, inSync: false });
      else r.folders.push({ id: f.id, state: 'held', needFiles: 0, needBytes: 0, inSync: false, held: why });
    }
    // "unavailable" SMART is said, not counted either way: most USB bridges hide it.
    const healthOk = r.health.smart.state !== 'failing' && r.health.smart.state !== 'warning' && !r.health.storage.low && !r.health.power.undervoltage;
    r.ok = r.daemon === 'active' && (!r.drive || r.drive.mounted) && r.folders.every((f) => f.inSync) && healthOk;
  } catch (e) {
    r.error = e instanceof Error ? e.message : String(e);
  } finally {
    r.roundTrips = t?.roundTrips ?? 0;
    t?.close();
  }
  return r;
}
