/**
 * Reads the converger's line protocol (provision/apply.sh, one tab-separated record per line:
 * PROTO, STEP, CHANGE, DIFF, HANDLER, WARN, OUT, FAIL, SUMMARY) into a per-host result.
 * Lines are parsed as they stream in so a live progress row can show the current step.
 */
export interface ChangeRecord {
  kind: string;
  target: string;
  action: string;
}

export interface HandlerRecord {
  name: string;
  action: string;
  unit: string;
  status: string;
}

export interface ApplyFailure {
  step: string;
  /** Exit code of the failing command, or "-" when the converger itself refused. */
  code: string;
  message: string;
  /** Output of the failing command (last lines). */
  output: string[];
}

export interface ApplyOutcome {
  mode: 'apply' | 'check';
  changes: ChangeRecord[];
  handlers: HandlerRecord[];
  /** Unified diff lines per file path (check mode). */
  diffs: Map<string, string[]>;
  warnings: string[];
  failure?: ApplyFailure;
  /** SUMMARY seen: the converger ran to its end (ok or failed), not cut off. */
  finished: boolean;
  lastStep: string;
}

export class ProtocolReader {
  readonly outcome: ApplyOutcome = { mode: 'apply', changes: [], handlers: [], diffs: new Map(), warnings: [], finished: false, lastStep: '' };
  private buf = '';
  private out: string[] = [];
  /** Lines that are not protocol records (kept for the log; the converger prints none). */
  readonly stray: string[] = [];

  constructor(private readonly onEvent?: (kind: string, o: ApplyOutcome) => void) {}

  push(chunk: Buffer | string): void {
    this.buf += chunk.toString();
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      this.line(this.buf.slice(0, nl));
      this.buf = this.buf.slice(nl + 1);
    }
  }

  end(): ApplyOutcome {
    if (this.buf) this.line(this.buf);
    this.buf = '';
    return this.outcome;
  }

  private line(l: string): void {
    const f = l.split('\t');
    const o = this.outcome;
    switch (f[0]) {
      case 'PROTO':
        if (f[2] === 'mode=check') o.mode = 'check';
        break;
      case 'STEP':
        o.lastStep = f[1] ?? '';
        break;
      case 'CHANGE':
        o.changes.push({ kind: f[1] ?? '', target: f[2] ?? '', action: f[3] ?? '' });
        break;
      case 'DIFF': {
        const p = f[1] ?? '';
        const list = o.diffs.get(p) ?? [];
        list.push(f.slice(2).join('\t'));
        o.diffs.set(p, list);
        break;
      }
      case 'HANDLER':
        o.handlers.push({ name: f[1] ?? '', action: f[2] ?? '', unit: f[3] ?? '', status: f[4] ?? '' });
        break;
      case 'WARN':
        o.warnings.push(f.slice(1).join('\t'));
        break;
      case 'OUT':
        this.out.push(f.slice(1).join('\t'));
        break;
      case 'FAIL':
        o.failure = { step: f[1] ?? '', code: f[2] ?? '', message: f.slice(3).join('\t'), output: this.out };
        this.out = [];
        break;
      case 'SUMMARY':
        o.finished = true;
        break;
      default:
        this.stray.push(l);
        return;
    }
    this.onEvent?.(f[0]!, o);
  }
}

/** Handlers that actually did something (restart, reload, start…), for "changed" accounting. */
export function ranHandlers(o: ApplyOutcome): HandlerRecord[] {
  return o.handlers.filter((h) => h.status === 'ran' || h.status === 'would-run');
}
