/**
 * Progress and events for long work. Human mode draws one status line per step (and a bar when
 * sizes are known); --json mode prints one JSON object per line on stdout for machines.
 * Commands receive a Reporter and never write progress to the terminal themselves.
 *
 * The status line is drawn here rather than by a progress-bar library: what it shows (bytes or
 * items, rate and ETA only for bytes, a free-text detail), where it goes (stderr, stdout being
 * for results) and what happens without a terminal (a plain line every 10 s) would each be
 * configuration of such a library, and the line is a dozen lines of code.
 */
export interface ProgressUpdate {
  /** Units done so far (bytes when unit is "bytes"). */
  done: number;
  total?: number;
  unit?: 'bytes' | 'items';
  /** Words a count alone does not say (e.g. "unpacked 40/120, configured 12/120"). */
  detail?: string;
}

export type ReportEvent =
  | { type: 'step-start'; step: string; ts: number }
  | { type: 'step-end'; step: string; ok: boolean; ms: number; detail?: string; error?: unknown; ts: number }
  | { type: 'progress'; step: string; done: number; total?: number; unit: string; rate?: number; detail?: string; ts: number }
  | { type: 'info' | 'warn'; message: string; ts: number }
  | { type: 'result'; data: unknown; ts: number };

export interface Reporter {
  readonly json: boolean;
  step<T>(name: string, fn: (progress: (u: ProgressUpdate) => void) => Promise<T>, detail?: (r: T) => string): Promise<T>;
  info(message: string): void;
  warn(message: string): void;
  result(data: unknown): void;
}

const useColor = (): boolean => !process.env.NO_COLOR && !!process.stderr.isTTY;

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/** The fields of an error that carries data (it has toJSON, e.g. a ChecksumVerificationError), for machines. */
function errorData(e: unknown): unknown {
  const toJSON = (e as { toJSON?: unknown } | null)?.toJSON;
  return typeof toJSON === 'function' ? (toJSON as () => unknown).call(e) : undefined;
}

class JsonReporter implements Reporter {
  readonly json = true;
  private emit(e: ReportEvent): void {
    process.stdout.write(JSON.stringify(e) + '\n');
  }
  async step<T>(name: string, fn: (p: (u: ProgressUpdate) => void) => Promise<T>, detail?: (r: T) => string): Promise<T> {
    const t0 = Date.now();
    this.emit({ type: 'step-start', step: name, ts: t0 });
    let last = 0;
    try {
      const r = await fn((u) => {
        const now = Date.now();
        if (now - last < 500 && u.total !== undefined && u.done < u.total) return;
        last = now;
        const secs = (now - t0) / 1000;
        this.emit({ type: 'progress', step: name, done: u.done, total: u.total, unit: u.unit ?? 'bytes', rate: secs > 0 ? Math.round(u.done / secs) : undefined, ...(u.detail ? { detail: u.detail } : {}), ts: now });
      });
      this.emit({ type: 'step-end', step: name, ok: true, ms: Date.now() - t0, detail: detail?.(r), ts: Date.now() });
      return r;
    } catch (e) {
      const error = errorData(e);
      this.emit({ type: 'step-end', step: name, ok: false, ms: Date.now() - t0, detail: e instanceof Error ? e.message : String(e), ...(error === undefined ? {} : { error }), ts: Date.now() });
      throw e;
    }
  }
  info(message: string): void { this.emit({ type: 'info', message, ts: Date.now() }); }
  warn(message: string): void { this.emit({ type: 'warn', message, ts: Date.now() }); }
  result(data: unknown): void { this.emit({ type: 'result', data, ts: Date.now() }); }
}

class HumanReporter implements Reporter {
  readonly json = false;
  private readonly tty = !!process.stderr.isTTY;
  private paint(code: string, s: string): string {
    return useColor() ? `\x1b[${code}m${s}\x1b[0m` : s;
  }
  async step<T>(name: string, fn: (p: (u: ProgressUpdate) => void) => Promise<T>, detail?: (r: T) => string): Promise<T> {
    const t0 = Date.now();
    let drawn = false;
    // a log gets a line per 10 s, the first after 10 s too: a rate and ETA from the first
    // instant of a step mean nothing, and a quick step needs no progress line at all
    let lastLog = t0;
    if (!this.tty) process.stderr.write(`… ${name}\n`);
    const progress = (u: ProgressUpdate): void => {
      const now = Date.now();
      const secs = Math.max((now - t0) / 1000, 0.001);
      const unitBytes = (u.unit ?? 'bytes') === 'bytes';
      const fmt = (n: number): string => (unitBytes ? formatBytes(n) : String(n));
      let line = `${name}: ${fmt(u.done)}`;
      if (u.total) {
        const pct = Math.min(100, (u.done / u.total) * 100);
        const width = 24;
        const fill = Math.round((pct / 100) * width);
        const rate = u.done / secs;
        const eta = rate > 0 ? (u.total - u.done) / rate : 0;
        line = `${name} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${pct.toFixed(0)}% ${fmt(u.done)}/${fmt(u.total)}`;
        if (unitBytes) line += ` ${formatBytes(rate)}/s ETA ${formatDuration(Math.round(eta * 1000))}`;
      } else if (unitBytes) {
        line += ` ${formatBytes(u.done / secs)}/s`;
      }
      if (u.detail) line += ` (${u.detail})`;
      if (this.tty) {
        // a line that wraps could not be cleared by the next \r: keep it within the terminal
        const cols = process.stderr.columns;
        if (cols && line.length >= cols) line = `${line.slice(0, Math.max(cols - 2, 1))}…`;
        process.stderr.write(`\r\x1b[2K${line}`);
        drawn = true;
      } else if (now - lastLog > 10_000) {
        lastLog = now;
        process.stderr.write(`  ${line}\n`);
      }
    };
    try {
      const r = await fn(progress);
      if (drawn) process.stderr.write('\r\x1b[2K');
      const d = detail?.(r);
      process.stderr.write(`${this.paint('32', '✔')} ${name} (${formatDuration(Date.now() - t0)})${d ? ` — ${d}` : ''}\n`);
      return r;
    } catch (e) {
      if (drawn) process.stderr.write('\r\x1b[2K');
      process.stderr.write(`${this.paint('31', '✖')} ${name} (${formatDuration(Date.now() - t0)})\n`);
      throw e;
    }
  }
  info(message: string): void { process.stderr.write(`${message}\n`); }
  warn(message: string): void { process.stderr.write(`${this.paint('33', 'warning:')} ${message}\n`); }
  result(data: unknown): void {
    if (typeof data === 'string') process.stdout.write(data.endsWith('\n') ? data : data + '\n');
  }
}

export function createReporter(opts: { json?: boolean }): Reporter {
  return opts.json ? new JsonReporter() : new HumanReporter();
}
