/**
 * Apply (or check) one archive on one host: connect, one run, disconnect — and always come back
 * with a report rather than an exception, so a fleet can carry on with the other hosts.
 */
import { Failure, UserError } from '../util/errors.js';
import { SshTarget } from '../targets/ssh.js';
import { exitText, ranHandlers, type ApplyChange, type ApplyFailure, type HandlerRun } from '../bundle/protocol.js';
import { applyOverSsh, type BundleArchive } from './remote.js';

export interface HostSpec {
  name: string;
  /** Name or address as typed: an SSH config alias is resolved when connecting. */
  address: string;
  /** Unset: the SSH config's User, else pi. */
  user?: string;
  /** Unset: the SSH config's Port, else 22. */
  port?: number;
}

export interface ConnectPolicy {
  /** OpenSSH client config: a path, null for none, undefined for ~/.ssh/config if present. */
  sshConfigFile?: string | null;
  identities?: string[];
  knownHostsFile?: string;
  acceptNewHostKey?: boolean;
  hostKeyFingerprint?: string;
  connectTimeoutMs?: number;
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

export function connectTo(h: HostSpec, p: ConnectPolicy): Promise<SshTarget> {
  return SshTarget.connect({
    host: h.address,
    port: h.port,
    user: h.user,
    defaultUser: 'pi',
    sshConfigFile: p.sshConfigFile,
    label: h.name,
    identities: p.identities,
    knownHostsFile: p.knownHostsFile,
    acceptNewHostKey: p.acceptNewHostKey,
    hostKeyFingerprint: p.hostKeyFingerprint,
    connectTimeoutMs: p.connectTimeoutMs,
  });
}

export async function applyToHost(
  h: HostSpec,
  archive: BundleArchive,
  o: {
    check?: boolean;
    policy: ConnectPolicy;
    onEvent?: (kind: string, step: string | undefined) => void;
    onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
    onConnected?: (t: SshTarget) => void;
  },
): Promise<HostReport> {
  const t0 = Date.now();
  const base: HostReport = { name: h.name, address: h.address, status: 'failed', mode: o.check ? 'check' : 'apply', changes: [], handlers: [], diffs: {}, warnings: [], ms: 0, roundTrips: 0 };
  let t: SshTarget | undefined;
  try {
    t = await connectTo(h, o.policy);
    o.onConnected?.(t);
    const r = await applyOverSsh(t, archive, { check: o.check, onEvent: o.onEvent, onOutput: o.onOutput });
    const rep = r.report;
    return {
      ...base,
      status: rep.failure ? 'failed' : r.changed ? 'changed' : 'unchanged',
      changes: rep.changes,
      handlers: ranHandlers(rep),
      diffs: rep.diffs,
      warnings: rep.warnings,
      ...(rep.failure ? { failure: rep.failure } : {}),
      ms: Date.now() - t0,
      roundTrips: t.roundTrips,
    };
  } catch (e) {
    const exitCode = e instanceof UserError ? 2 : 1;
    const message = e instanceof Error ? e.message : String(e);
    if (!(e instanceof UserError || e instanceof Failure)) {
      return { ...base, error: { message: `internal error: ${e instanceof Error ? (e.stack ?? message) : message}`, exitCode: 1 }, ms: Date.now() - t0, roundTrips: t?.roundTrips ?? 0 };
    }
    return { ...base, error: { message, exitCode }, ms: Date.now() - t0, roundTrips: t?.roundTrips ?? 0 };
  } finally {
    t?.close();
  }
}

/** Human lines for one host's result: changes, diffs, handlers, the failing step. */
export function describeReport(r: HostReport, o: { diffs?: boolean } = {}): string[] {
  const out: string[] = [];
  const verbIng = r.mode === 'check' ? 'would change' : 'changed';
  for (const c of r.changes) out.push(`  ${verbIng}: ${c.kind} ${c.target} (${c.action})`);
  if (o.diffs !== false) {
    for (const [p, diff] of Object.entries(r.diffs)) {
      out.push(`  --- diff ${p}`);
      for (const l of diff.replace(/\n$/, '').split('\n')) out.push(`  ${l}`);
    }
  }
  for (const hd of r.handlers) out.push(`  ${r.mode === 'check' ? 'would run' : 'ran'}: ${hd.action} ${hd.unit ?? hd.name}`);
  for (const w of r.warnings) out.push(`  warning: ${w}`);
  if (r.failure) {
    out.push(`  FAILED at step "${r.failure.step}"${exitText(r.failure)}: ${r.failure.message}`);
    for (const l of r.failure.output.slice(-20)) out.push(`    | ${l}`);
  }
  if (r.error) out.push(`  error: ${r.error.message}`);
  return out;
}
