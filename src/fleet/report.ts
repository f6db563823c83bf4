/** How a fleet run reads: the JSON report (also written as report.json) and the summary table. */
import { exitText } from '../bundle/protocol.js';
import type { FleetResult } from './run.js';

export function fleetJson(r: FleetResult): unknown {
  const count = (s: string): number => r.reports.filter((x) => x.status === s).length;
  return {
    summary: { changed: count('changed'), unchanged: count('unchanged'), failed: count('failed'), skipped: count('skipped'), ms: r.ms, stopped: r.stopped ?? null },
    runDir: r.runDir,
    hosts: r.reports,
  };
}

export function summaryTable(r: FleetResult): string {
  const rows = r.reports.map((x) => [
    x.name,
    x.status,
    String(x.changes.length),
    String(x.handlers.length),
    x.ms ? `${(x.ms / 1000).toFixed(1)}s` : '-',
    x.failure ? `step ${x.failure.step}${exitText(x.failure)}: ${x.failure.message}` : (x.error?.message ?? ''),
  ]);
  const head = ['HOST', 'RESULT', 'CHANGES', 'RESTARTS', 'TIME', 'DETAIL'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]): string => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(w[i]!))).join('  ').trimEnd();
  const count = (s: string): number => r.reports.filter((x) => x.status === s).length;
  return [
    fmt(head),
    ...rows.map(fmt),
    '',
    `${count('changed')} changed, ${count('unchanged')} unchanged, ${count('failed')} failed${count('skipped') ? `, ${count('skipped')} skipped` : ''} in ${(r.ms / 1000).toFixed(1)}s${r.stopped ? ` — stopped: ${r.stopped}` : ''}`,
    `logs: ${r.runDir}`,
  ].join('\n');
}
