/**
 * Parsers for the line protocol provision/apply.sh and verify.sh print on stdout (documented in
 * provision/README.md). Shared by every target: an image build's chroot, provision and fleet
 * over SSH feed the same lines in and get the same report out.
 */

export interface ApplyChange {
  /** package, group, user, dir, file, unit, tempfile */
  kind: string;
  target: string;
  /** e.g. created, updated, mode, owner, installed, purged, enabled, removed; in check mode: install, purge, remove… */
  action: string;
}

export interface HandlerRun {
  name: string;
  action: string;
  unit?: string;
  status: 'ran' | 'would-run' | 'skipped-chroot' | 'failed';
}

export interface ApplyFailure {
  step: string;
  /** Exit code of the failing command; null when the converger refused without running one. */
  exitCode: number | null;
  message: string;
  /** Last lines of the failing command's output. */
  output: string[];
}

export interface ApplyReport {
  mode: 'apply' | 'check';
  env: 'chroot' | 'live';
  ok: boolean;
  steps: string[];
  changes: ApplyChange[];
  /** Unified diff per file path (check mode); secret files carry a placeholder line only. */
  diffs: Record<string, string>;
  handlers: HandlerRun[];
  warnings: string[];
  failure?: ApplyFailure;
  counts: { changes: number; handlers: number; byKind: Record<string, number> };
}

export const APPLY_STEPS = ['facts', 'packages-install', 'packages-purge', 'users', 'dirs', 'files', 'kernel-cmdline', 'remove', 'units', 'handlers'] as const;

/**
 * Incremental parser: feed output as it arrives (for progress), then take the report.
 * `onRecord` hears every protocol record with the step it belongs to.
 */
export class ApplyOutputParser {
  private buf = '';
  private mode: 'apply' | 'check' = 'apply';
  private env: 'chroot' | 'live' = 'live';
  private sawProto = false;
  private summary: Record<string, string> | undefined;
  private readonly steps: string[] = [];
  private readonly changes: ApplyChange[] = [];
  private readonly diffs = new Map<string, string[]>();
  private readonly handlers: HandlerRun[] = [];
  private readonly warnings: string[] = [];
  private readonly output: string[] = [];
  private failure: ApplyFailure | undefined;
  /** Lines that are not part of the protocol (kept for error messages). */
  readonly stray: string[] = [];

  constructor(private readonly onRecord?: (tag: string, step: string | undefined) => void) {}

  /** A chunk of stdout, split at newlines; a partial line waits for the rest. */
  push(chunk: Buffer | string): void {
    this.buf += chunk.toString();
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      this.line(this.buf.slice(0, nl));
      this.buf = this.buf.slice(nl + 1);
    }
  }

  /** The stream ended: the report, counting a last unterminated line. */
  end(): ApplyReport {
    if (this.buf) this.line(this.buf);
    this.buf = '';
    return this.report();
  }

  line(raw: string): void {
    const l = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const tab = l.indexOf('\t');
    const tag = tab < 0 ? l : l.slice(0, tab);
    const rest = tab < 0 ? '' : l.slice(tab + 1);
    const f = rest.split('\t');
    switch (tag) {
      case 'PROTO':
        this.sawProto = true;
        for (const kv of f.slice(1)) {
          const [k, v] = kv.split('=');
          if (k === 'mode' && (v === 'apply' || v === 'check')) this.mode = v;
          if (k === 'env' && (v === 'chroot' || v === 'live')) this.env = v;
        }
        break;
      case 'STEP':
        this.steps.push(rest);
        break;
      case 'CHANGE':
        this.changes.push({ kind: f[0] ?? '', target: f[1] ?? '', action: f.slice(2).join('\t') });
        break;
      case 'DIFF': {
        // DIFF<TAB>path<TAB>line — the line itself may contain tabs.
        const path = f[0] ?? '';
        const text = f.slice(1).join('\t');
        const list = this.diffs.get(path) ?? [];
        list.push(text);
        this.diffs.set(path, list);
        break;
      }
      case 'HANDLER': {
        const status = f[3] as HandlerRun['status'];
        this.handlers.push({ name: f[0] ?? '', action: f[1] ?? '', ...(f[2] && f[2] !== '-' ? { unit: f[2] } : {}), status });
        break;
      }
      case 'WARN':
        this.warnings.push(rest);
        break;
      case 'OUT':
        this.output.push(rest);
        break;
      case 'FAIL': {
        const code = f[1] !== undefined && /^\d+$/.test(f[1]) ? Number(f[1]) : null;
        this.failure = { step: f[0] ?? '', exitCode: code, message: f.slice(2).join('\t'), output: [...this.output] };
        break;
      }
      case 'SUMMARY':
        this.summary = Object.fromEntries(f.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
        break;
      default:
        if (l !== '') this.stray.push(l);
        return;
    }
    this.onRecord?.(tag, this.currentStep);
  }

  /** The last step started, for progress display. */
  get currentStep(): string | undefined {
    return this.steps[this.steps.length - 1];
  }

  report(): ApplyReport {
    let failure = this.failure;
    if (!failure && !this.summary) {
      // No summary line: the converger was cut off (connection lost, killed) mid-run.
      failure = {
        step: this.currentStep ?? (this.sawProto ? 'start' : 'launch'),
        exitCode: null,
        message: this.sawProto ? 'the converger stopped without a summary (interrupted?)' : 'the converger did not start',
        output: [...this.output, ...this.stray.slice(-50)],
      };
    }
    const byKind: Record<string, number> = {};
    for (const c of this.changes) byKind[c.kind] = (byKind[c.kind] ?? 0) + 1;
    const diffs: Record<string, string> = {};
    for (const [p, ls] of this.diffs) diffs[p] = ls.join('\n') + '\n';
    const ok = !failure && this.summary?.result === 'ok';
    return {
      mode: this.mode,
      env: this.env,
      ok,
      steps: [...this.steps],
      changes: [...this.changes],
      diffs,
      handlers: [...this.handlers],
      warnings: [...this.warnings],
      ...(failure ? { failure } : {}),
      counts: { changes: this.changes.length, handlers: this.handlers.filter((h) => h.status === 'ran').length, byKind },
    };
  }
}

export function parseApplyOutput(text: string): ApplyReport {
  const p = new ApplyOutputParser();
  for (const l of text.split('\n')) p.line(l);
  return p.report();
}

export interface CheckResult {
  /** Index into Plan.checks. */
  index: number;
  /** pass, fail, skip (cannot be judged here, e.g. offline) or remote (the caller must run it). */
  status: 'pass' | 'fail' | 'skip' | 'remote';
  detail: string;
}

export interface VerifyOutput {
  results: CheckResult[];
  complete: boolean;
}

export function parseVerifyOutput(text: string): VerifyOutput {
  const results: CheckResult[] = [];
  let complete = false;
  for (const raw of text.split('\n')) {
    const f = raw.replace(/\r$/, '').split('\t');
    if (f[0] === 'CHECK' && f.length >= 3) {
      const status = f[2] as CheckResult['status'];
      if (!['pass', 'fail', 'skip', 'remote'].includes(status)) continue;
      results.push({ index: Number(f[1]), status, detail: f.slice(3).join('\t') });
    } else if (f[0] === 'SUMMARY') complete = true;
  }
  return { results, complete };
}

/** Handlers that did (or would do) something: restart, reload, start. */
export function ranHandlers(r: Pick<ApplyReport, 'handlers'>): HandlerRun[] {
  return r.handlers.filter((h) => h.status === 'ran' || h.status === 'would-run');
}

/** " (exit N)" for a failure whose command had an exit code, else nothing. */
export function exitText(f: ApplyFailure): string {
  return f.exitCode === null ? '' : ` (exit ${f.exitCode})`;
}
