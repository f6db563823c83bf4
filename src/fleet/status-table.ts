/** `syncpi status` as a table: one row per host, the detail column saying what needs attention. */
import { formatBytes } from '../util/report.js';
import type { HostStatusReport } from './status.js';

export function statusTable(results: HostStatusReport[]): string {
  const rows = results.map((r) => [
    r.name,
    r.reachable ? (r.ok ? 'ok' : 'ATTENTION') : 'UNREACHABLE',
    r.daemon ?? '-',
    r.folders.length ? `${r.folders.filter((f) => f.inSync).length}/${r.folders.length} in sync` : '-',
    r.drive ? (r.drive.mounted ? `mounted, ${formatBytes(r.drive.freeBytes ?? 0)} free` : 'NOT MOUNTED') : '-',
    r.rootFreeBytes ? formatBytes(r.rootFreeBytes) : '-',
    r.health ? healthCell(r.health) : '-',
    r.error ?? [
      ...r.folders.filter((f) => !f.inSync).map((f) => `${f.id}: ${f.held ? `HELD BACK: ${f.held}` : (f.error ?? (f.fileErrors ? `${f.fileErrors} file(s) failed to sync` : `${f.state}, ${f.needFiles} files to sync`))}`),
      ...(r.health ? healthDetail(r.health) : []),
    ].join('; '),
  ]);
  const head = ['HOST', 'STATUS', 'DAEMON', 'FOLDERS', 'DRIVE', 'ROOT FREE', 'HEALTH', 'DETAIL'];
  const w = head.map((x, i) => Math.max(x.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ').trimEnd() + '\n').join('');
}

type Health = NonNullable<HostStatusReport['health']>;

/** SMART, free space and power in a few words: "SMART healthy, 12% free, power ok". */
function healthCell(h: Health): string {
  const free = h.storage.freeBytes !== undefined && h.storage.sizeBytes ? `${Math.floor((h.storage.freeBytes / h.storage.sizeBytes) * 100)}% free` : 'free ?';
  const power = h.power.sources.length === 0 ? 'power ?' : h.power.undervoltage ? 'UNDERVOLTAGE' : h.power.throttled ? 'throttled' : 'power ok';
  return `SMART ${h.smart.state === 'healthy' || h.smart.state === 'unavailable' ? h.smart.state : h.smart.state.toUpperCase()}, ${h.storage.low ? `LOW: ${free}` : free}, ${power}`;
}

function healthDetail(h: Health): string[] {
  const out: string[] = [];
  if (h.smart.state === 'failing' || h.smart.state === 'warning') out.push(`drive: ${h.smart.reason}`);
  if (h.storage.low) out.push(`${h.storage.path}: less than ${h.storage.minFreePercent}% free`);
  if (h.power.undervoltage || h.power.throttled) out.push(`power: ${h.power.reason}`);
  return out;
}
