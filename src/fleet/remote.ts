/**
 * One apply on one live host: the bundle archive travels on the stdin of a single command that
 * unpacks it into a private temp dir, takes the host's apply lock and runs the converger. That is
 * one upload and one run — one SSH channel — per apply, whatever the plan's size.
 */
import { Failure } from '../util/errors.js';
import { shJoin } from '../util/shell.js';
import { assertSudoWorked, type SshTarget } from '../targets/ssh.js';
import { ProtocolReader, ranHandlers, type ApplyOutcome } from './protocol.js';

export interface BundleArchive {
  /** A tar stream holding the converger and the bundle directory. */
  tar: Buffer;
  /** Path of the converger script inside the archive (e.g. "apply.sh"). */
  script: string;
  /** Path of the bundle directory inside the archive (e.g. "bundle"). */
  bundleDir: string;
}

export interface HostApplyResult {
  outcome: ApplyOutcome;
  /** Files, packages, users, units or handlers changed (or would change, in check mode). */
  changed: boolean;
  exitCode: number | null;
  /** Raw output, for the per-host log. */
  stdout: string;
  stderr: string;
  ms: number;
}

/** Serialises applies to one host; a second syncpi waits instead of interleaving writes. */
const LOCK = '/run/syncpi-apply.lock';

/**
 * The wrapper runs as root. A cut connection closes its pipes: the next write raises SIGPIPE,
 * which (like HUP/TERM) exits through the EXIT trap so the unpacked bundle is removed.
 */
export function wrapperScript(a: BundleArchive, check: boolean): string {
  const args = [...(check ? ['--check'] : []), '--live'];
  return [
    'set -u',
    'umask 077',
    'd=$(mktemp -d /tmp/syncpi-bundle.XXXXXX) || { printf "FAIL\\tupload\\t-\\tcannot create a temp dir\\n"; exit 1; }',
    `trap 'rm -rf "$d"' EXIT`,
    "trap 'exit 129' HUP PIPE",
    "trap 'exit 143' TERM",
    "trap 'exit 130' INT",
    'if ! tar -x -f - -C "$d" 2>"$d/.tar-err"; then',
    '  rc=$?; while IFS= read -r l; do printf "OUT\\t%s\\n" "$l"; done <"$d/.tar-err"',
    '  printf "FAIL\\tupload\\t%s\\tthe bundle did not arrive whole\\n" "$rc"; exit 1',
    'fi',
    `exec 9>${LOCK}`,
    'if command -v flock >/dev/null 2>&1 && ! flock -w 300 9; then printf "FAIL\\tlock\\t-\\tanother apply is still running on this host\\n"; exit 1; fi',
    `sh "$d"/${shJoin([a.script])} ${args.join(' ')} "$d"/${shJoin([a.bundleDir])}`,
    'rc=$?',
    'exit $rc',
  ].join('\n');
}

export async function applyOverSsh(
  t: SshTarget,
  archive: BundleArchive,
  o: { check?: boolean; onEvent?: (kind: string, outcome: ApplyOutcome) => void; onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void } = {},
): Promise<HostApplyResult> {
  const reader = new ProtocolReader(o.onEvent);
  const t0 = Date.now();
  const cmd = shJoin([...t.sudoArgv(), 'sh', '-c', wrapperScript(archive, !!o.check), 'syncpi-apply']);
  const r = await t.exec(cmd, {
    stdin: archive.tar,
    onStdout: (d) => {
      reader.push(d);
      o.onOutput?.(d, 'stdout');
    },
    onStderr: (d) => o.onOutput?.(d, 'stderr'),
  });
  assertSudoWorked(t, r);
  const outcome = reader.end();
  if (!outcome.failure && (r.code !== 0 || !outcome.finished)) {
    // Not a reported failure: the converger was cut off or could not start.
    outcome.failure = {
      step: outcome.lastStep || 'start',
      code: r.code === null ? (r.signal ?? '-') : String(r.code),
      message: outcome.finished ? 'the converger exited with an error' : 'the converger stopped before its summary (interrupted or killed)',
      output: r.stderr.trim() ? r.stderr.trim().split('\n').slice(-50) : [],
    };
  }
  if (reader.stray.length && !outcome.failure && r.code !== 0) {
    throw new Failure(`${t.label}: unexpected converger output`, reader.stray.slice(0, 20));
  }
  return {
    outcome,
    changed: outcome.changes.length > 0 || ranHandlers(outcome).length > 0,
    exitCode: r.code,
    stdout: r.stdout,
    stderr: r.stderr,
    ms: Date.now() - t0,
  };
}
