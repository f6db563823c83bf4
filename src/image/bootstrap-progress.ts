/**
 * Reads mmdebstrap's --verbose output (apt's and dpkg's own lines) into progress: packages
 * unpacked and configured out of the total apt announced, and how long each package's
 * configuration took. Under emulation one maintainer script can take minutes; naming the slowest
 * ones is the profile a cold build needs.
 */
export interface BootstrapProgress {
  /** Sum of apt's "N newly installed" announcements so far (essential set, then the rest). */
  total: number;
  downloaded: number;
  unpacked: number;
  configured: number;
  /** Configure time per package: from its "Setting up" line to the next line that ends it. */
  setupMs: Map<string, number>;
}

export function newBootstrapProgress(): BootstrapProgress {
  return { total: 0, downloaded: 0, unpacked: 0, configured: 0, setupMs: new Map() };
}

const NEWLY = /^\d+ upgraded, (\d+) newly installed/;
const GET = /^Get:\d+ /;
const UNPACK = /^Unpacking \S+ /;
const SETUP = /^Setting up (\S+?)(?::\S+)? /;
/** Lines after which the package being set up is done: the next package, a trigger, mmdebstrap. */
const ENDS_SETUP = /^(Setting up |Processing triggers |I: |Unpacking )/;

/**
 * A line-by-line reader. `now` is passed in so the timing is testable; the current package's
 * time is closed by the next line that starts something else.
 */
export function bootstrapLineReader(p: BootstrapProgress = newBootstrapProgress()): { progress: BootstrapProgress; line(l: string, now: number): boolean; end(now: number): void } {
  let current: { name: string; since: number } | undefined;
  const close = (now: number) => {
    if (!current) return;
    p.setupMs.set(current.name, (p.setupMs.get(current.name) ?? 0) + (now - current.since));
    current = undefined;
  };
  return {
    progress: p,
    /** true when a counter moved. */
    line(l: string, now: number): boolean {
      if (ENDS_SETUP.test(l)) close(now);
      let m: RegExpExecArray | null;
      if ((m = NEWLY.exec(l))) p.total += Number(m[1]);
      else if (GET.test(l)) p.downloaded++;
      else if (UNPACK.test(l)) p.unpacked++;
      else if ((m = SETUP.exec(l))) {
        p.configured++;
        current = { name: m[1]!, since: now };
      } else return false;
      return true;
    },
    end(now: number): void {
      close(now);
    },
  };
}

export function progressDetail(p: BootstrapProgress): string {
  const of = (n: number) => (p.total ? `${n}/${p.total}` : String(n));
  return `downloaded ${of(p.downloaded)}, unpacked ${of(p.unpacked)}, configured ${of(p.configured)}`;
}

/** The N packages whose configuration took longest, slowest first. */
export function slowestSetups(p: BootstrapProgress, n = 5): Array<{ name: string; ms: number }> {
  return [...p.setupMs.entries()]
    .map(([name, ms]) => ({ name, ms }))
    .sort((a, b) => b.ms - a.ms || a.name.localeCompare(b.name))
    .slice(0, n);
}
