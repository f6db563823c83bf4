/**
 * Many hosts, one job each: bounded concurrency, canaries first, a failure threshold, a live row
 * per host, a log per host in the run directory, and a summary. One failing host never stops the
 * others unless a canary failed or the threshold was reached; hosts never started are "skipped".
 */
import { createWriteStream, mkdirSync, writeFileSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import type { HostReport, HostSpec } from '../provision/host.js';
import { fleetJson } from './report.js';
import { Rows } from './rows.js';
import { exitText } from '../bundle/protocol.js';

export interface FleetOptions {
  parallel: number;
  /** Apply to this many hosts first; stop if any of them fails. */
  canary?: number;
  /** Stop starting hosts once this many have failed. */
  maxFail?: number;
  runDir: string;
  /** Live rows on a TTY, state lines otherwise; nothing in JSON mode (events instead). */
  display: 'tty' | 'lines' | 'json' | 'quiet';
}

export interface HostContext {
  log: WriteStream;
  /** Update the host's live row. */
  setState(state: string): void;
}

export interface FleetResult {
  reports: HostReport[];
  /** Why hosts were skipped, when they were. */
  stopped?: string;
  runDir: string;
  ms: number;
}

/**
 * Run `job` on every item in order, at most `parallel` at once. Once `stop` gives a reason, no
 * new item is started (those running finish) and the reason is returned.
 */
export async function boundedPool<T>(items: T[], parallel: number, job: (item: T, index: number) => Promise<void>, stop: () => string | undefined = () => undefined): Promise<string | undefined> {
  let next = 0;
  let stopped: string | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const why = stop();
      if (why) {
        stopped ??= why;
        return;
      }
      const i = next++;
      await job(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
  return stopped;
}

export async function runFleet<H extends HostSpec>(hosts: H[], job: (h: H, ctx: HostContext) => Promise<HostReport>, o: FleetOptions): Promise<FleetResult> {
  const t0 = Date.now();
  mkdirSync(o.runDir, { recursive: true });
  const rows = new Rows(hosts.map((h) => h.name), o.display);
  const reports = new Map<string, HostReport>();
  let failed = 0;
  let stopped: string | undefined;

  const runOne = async (h: H): Promise<void> => {
    const log = createWriteStream(path.join(o.runDir, `${h.name}.log`), { mode: 0o600 });
    rows.set(h.name, 'connecting');
    let r: HostReport;
    try {
      r = await job(h, { log, setState: (s) => rows.set(h.name, s) });
    } catch (e) {
      r = { name: h.name, address: h.address, status: 'failed', mode: 'apply', changes: [], handlers: [], diffs: {}, warnings: [], error: { message: e instanceof Error ? e.message : String(e), exitCode: 1 }, ms: 0, roundTrips: 0 };
    }
    log.write(`\n== result: ${r.status}${r.failure ? ` at step ${r.failure.step}${exitText(r.failure)}: ${r.failure.message}` : ''}${r.error ? `: ${r.error.message}` : ''}\n`);
    await new Promise<void>((res) => log.end(res));
    if (r.status === 'failed') failed++;
    reports.set(h.name, r);
    rows.set(h.name, r.status === 'failed' ? `failed${r.failure ? ` (${r.failure.step})` : ''}` : `${r.status}${r.changes.length ? ` (${r.changes.length})` : ''}`);
  };

  const thresholdReached = (): string | undefined => (o.maxFail !== undefined && failed >= o.maxFail ? `${failed} host(s) failed (--max-fail ${o.maxFail})` : undefined);
  const canaries = o.canary ? hosts.slice(0, o.canary) : [];
  const rest = hosts.slice(canaries.length);
  try {
    if (canaries.length) {
      stopped = await boundedPool(canaries, o.parallel, runOne, thresholdReached);
      const bad = canaries.filter((h) => reports.get(h.name)?.status === 'failed');
      if (bad.length) stopped = `canary ${bad.map((h) => h.name).join(', ')} failed`;
    }
    if (!stopped) stopped = await boundedPool(rest, o.parallel, runOne, thresholdReached);
  } finally {
    rows.stop();
  }

  const all = hosts.map(
    (h) =>
      reports.get(h.name) ?? { name: h.name, address: h.address, status: 'skipped' as const, mode: 'apply' as const, changes: [], handlers: [], diffs: {}, warnings: [], ms: 0, roundTrips: 0 },
  );
  for (const h of hosts) if (!reports.has(h.name)) rows.set(h.name, 'skipped');
  const result: FleetResult = { reports: all, stopped, runDir: o.runDir, ms: Date.now() - t0 };
  writeFileSync(path.join(o.runDir, 'report.json'), JSON.stringify(fleetJson(result), null, 2) + '\n', { mode: 0o600 });
  return result;
}
