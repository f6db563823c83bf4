/**
 * Apply (or check) one archive on one host: connect, one run through the SSH Target, disconnect —
 * and always come back with a report rather than an exception, so a fleet can carry on with the
 * other hosts.
 */
import { Failure, UserError } from '../util/errors.js';
import { SshConnection, type ConnectPolicy } from '../targets/ssh-connection.js';
import { SshTarget } from '../targets/ssh.js';
import { ApplyFailed, applyBundle, type BundleArchive } from '../targets/apply.js';
import { ranHandlers, type ApplyChange, type ApplyFailure, type ApplyReport, type HandlerRun } from '../bundle/protocol.js';

export interface HostSpec {
  name: string;
  /** Name or address as typed: an SSH config alias is resolved when connecting. */
  address: string;
  /** Unset: the SSH config's User, else pi. */
  user?: string;
  /** Unset: the SSH config's Port, else 22. */
  port?: number;
}

export type HostStatus = 'changed' | 'unchanged' | 'failed' | 'skipped';

export interface HostReport {
  name: string;
  address: string;
  status: HostStatus;
  mode: 'apply' | 'check';
  changes: ApplyChange[];
  handlers: HandlerRun[];
  /** Unified diff per file path (check mode). */
  diffs: Record<string, string>;
  warnings: string[];
  failure?: ApplyFailure;
  /** Connection or input problem (no converger output): message and exit class. */
  error?: { message: string; exitCode: number };
  ms: number;
  roundTrips: number;
}

export function connectTo(h: HostSpec, p: ConnectPolicy): Promise<SshConnection> {
  return SshConnection.connect({ ...p, host: h.address, port: h.port, user: h.user, defaultUser: 'pi', label: h.name });
}

export async function applyToHost(
  h: HostSpec,
  archive: BundleArchive,
  o: {
    check?: boolean;
    policy: ConnectPolicy;
    /** Every protocol record as parsed (live rows). */
    onRecord?: (tag: string, step: string | undefined) => void;
    /** The converger's output for the host's log: stdout line by line, stderr when it ended. */
    onOutput?: (text: string, stream: 'stdout' | 'stderr') => void;
    onConnected?: (c: SshConnection) => void;
  },
): Promise<HostReport> {
  const t0 = Date.now();
  const base: HostReport = { name: h.name, address: h.address, status: 'failed', mode: o.check ? 'check' : 'apply', changes: [], handlers: [], diffs: {}, warnings: [], ms: 0, roundTrips: 0 };
  let c: SshConnection | undefined;
  try {
    c = await connectTo(h, o.policy);
    o.onConnected?.(c);
    let rep: ApplyReport;
    try {
      rep = await applyBundle(new SshTarget(c), archive, {
        check: o.check,
        onRecord: o.onRecord,
        onLine: (l) => o.onOutput?.(`${l}\n`, 'stdout'),
        onStderr: (text) => o.onOutput?.(text, 'stderr'),
      });
    } catch (e) {
      // A failing step is the host's result, not an error of this run.
      if (!(e instanceof ApplyFailed)) throw e;
      rep = e.report;
    }
    const changed = rep.changes.length > 0 || ranHandlers(rep).length > 0;
    return {
      ...base,
      status: rep.failure ? 'failed' : changed ? 'changed' : 'unchanged',
      changes: rep.changes,
      handlers: ranHandlers(rep),
      diffs: rep.diffs,
      warnings: rep.warnings,
      ...(rep.failure ? { failure: rep.failure } : {}),
      ms: Date.now() - t0,
      roundTrips: c.roundTrips,
    };
  } catch (e) {
    const exitCode = e instanceof UserError ? 2 : 1;
    const message = e instanceof Error ? e.message : String(e);
    if (!(e instanceof UserError || e instanceof Failure)) {
      return { ...base, error: { message: `internal error: ${e instanceof Error ? (e.stack ?? message) : message}`, exitCode: 1 }, ms: Date.now() - t0, roundTrips: c?.roundTrips ?? 0 };
    }
    return { ...base, error: { message, exitCode }, ms: Date.now() - t0, roundTrips: c?.roundTrips ?? 0 };
  } finally {
    c?.close();
  }
}
