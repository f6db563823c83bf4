/**
 * What a boot did, read from the serial console alone: for a machine the test cannot reach over
 * a network (raspi3b). The harness has systemd log to the kernel ring buffer for the whole boot
 * (systemd.log_target=kmsg), so every unit's state change reaches the console as one full line
 * — `systemd[1]: Started ssh.service - OpenBSD Secure Shell server.` — unlike the status lines,
 * which are cut to the console's width.
 */

/** Kernel command line words that put systemd's unit log on the console, unthrottled. */
export const CONSOLE_UNIT_LOG = ['systemd.log_target=kmsg', 'systemd.log_level=info', 'printk.devkmsg=on'];

export interface UnitEvent {
  /** Seconds since the kernel started (the console line's timestamp). */
  at: number;
  unit: string;
  event: 'started' | 'finished' | 'mounted' | 'reached' | 'automount' | 'failed' | 'dependency' | 'stopped';
  detail: string;
}

export interface ConsoleReport {
  events: UnitEvent[];
  /** Kernel time at which multi-user.target was reached, if it was. */
  multiUserAt?: number;
  /** Units whose last word was a failure: what `systemctl --failed` would list. */
  failed: Array<{ unit: string; result: string }>;
  /** Units last seen started, finished, mounted, reached or set up (automount). */
  up: Set<string>;
}

// anywhere in the line: a getty's prompt may precede it ("syncpi login: [  505.87] systemd[1]: …")
const LINE = /\[\s*(\d+\.\d+)\]\s+systemd\[1\]: (.*)$/;
const PATTERNS: Array<[RegExp, UnitEvent['event']]> = [
  [/^Started (\S+)/, 'started'],
  [/^Finished (\S+)/, 'finished'],
  [/^Mounted (\S+)/, 'mounted'],
  [/^Reached target (\S+)/, 'reached'],
  [/^Set up automount (\S+)/, 'automount'],
  [/^Dependency failed for (\S+)/, 'dependency'],
  [/^Stopped (\S+)/, 'stopped'],
  [/^(\S+): Failed with result '([^']+)'/, 'failed'],
];

/** Console text without carriage returns and colour escapes, as systemd's status lines carry them. */
export function plainConsole(text: string): string {
  return text.replace(/\r/g, '').replace(/\x1b\[[0-9;:]*[A-Za-z]/g, '');
}

export function readConsole(text: string): ConsoleReport {
  const events: UnitEvent[] = [];
  for (const raw of plainConsole(text).split('\n')) {
    const m = LINE.exec(raw);
    if (!m) continue;
    for (const [re, event] of PATTERNS) {
      const p = re.exec(m[2]!);
      if (!p) continue;
      // a unit without a description ends the sentence: "Set up automount srv-sync.automount."
      events.push({ at: Number(m[1]), unit: p[1]!.replace(/\.$/, ''), event, detail: event === 'failed' ? p[2]! : m[2]! });
      break;
    }
  }
  const last = new Map<string, UnitEvent>();
  for (const e of events) if (e.event !== 'dependency') last.set(e.unit, e);
  const failed = [...last.values()].filter((e) => e.event === 'failed').map((e) => ({ unit: e.unit, result: e.detail }));
  const up = new Set([...last.values()].filter((e) => e.event !== 'failed' && e.event !== 'stopped').map((e) => e.unit));
  const mu = events.find((e) => e.event === 'reached' && e.unit === 'multi-user.target');
  return { events, failed, up, ...(mu ? { multiUserAt: mu.at } : {}) };
}
