/**
 * `syncpi status`: per host, is the sync daemon up, are its folders in sync, is the drive mounted
 * and how much space is free. One command gathers the system facts; the Syncthing REST API is
 * read through the same SSH connection (forwarded to the Pi's loopback), never over the LAN.
 */
import { parseListen } from '../config/validators.js';
import type { Config } from '../config/schema.js';
import { shJoin } from '../util/shell.js';
import { FOLDER_HOLDS, SYNCTHING_API_KEY } from '../plan/features/sync.js';
import { connectTo, type ConnectPolicy, type HostSpec } from './host.js';

export interface FolderStatus {
  id: string;
  state: string;
  needFiles: number;
  needBytes: number;
  inSync: boolean;
  error?: string;
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
  folders: FolderStatus[];
  ok: boolean;
  roundTrips: number;
}

/** Facts script: key=value lines; every path reaches it quoted. */
function factsScript(drive: string | undefined): string {
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
  return lines.join('\n');
}

export async function hostStatus(h: HostSpec, config: Config, policy: ConnectPolicy): Promise<HostStatusReport> {
  const r: HostStatusReport = { name: h.name, address: h.address, reachable: false, folders: [], ok: false, roundTrips: 0 };
  let t;
  try {
    t = await connectTo(h, policy);
    r.reachable = true;
    const drivePath = config.drive?.mount;
    const facts = await t.exec(shJoin(['sh', '-c', factsScript(drivePath)]));
    const lines = facts.stdout.split('\n');
    const kv = new Map(lines.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
    const holds = new Map(lines.filter((l) => l.startsWith('hold=')).map((l) => l.slice(5).split('\t')).map(([id, , why]) => [id!, why ?? 'held back'] as const));
    r.daemon = kv.get('daemon') || 'unknown';
    r.rootFreeBytes = Number(kv.get('rootfree')) || undefined;
    const apiKey = kv.get('apikey') || undefined;
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
          const s = JSON.parse(res.body) as { state?: string; needFiles?: number; needBytes?: number };
          const needFiles = s.needFiles ?? 0;
          const needBytes = s.needBytes ?? 0;
          r.folders.push({ id: f.id, state: s.state ?? '?', needFiles, needBytes, inSync: s.state === 'idle' && needFiles === 0 && needBytes === 0 });
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
    r.ok = r.daemon === 'active' && (!r.drive || r.drive.mounted) && r.folders.every((f) => f.inSync);
  } catch (e) {
    r.error = e instanceof Error ? e.message : String(e);
  } finally {
    r.roundTrips = t?.roundTrips ?? 0;
    t?.close();
  }
  return r;
}
