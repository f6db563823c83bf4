/**
 * One apply on one live host: the bundle archive travels on the stdin of a single command that
 * unpacks it into a private temp dir, takes the host's apply lock and runs the converger. That is
 * one upload and one run — one SSH channel — per apply, whatever the plan's size.
 */
import { shJoin } from '../util/shell.js';
import { assertSudoWorked, type SshTarget } from '../targets/ssh.js';
import { bundleRunScript, settleReport } from '../targets/apply.js';
import { ApplyOutputParser, ranHandlers, type ApplyReport } from '../bundle/protocol.js';

export interface BundleArchive {
  /** A tar stream holding the converger (apply.sh) beside the bundle's manifest and files. */
  tar: Buffer;
}

export interface HostApplyResult {
  report: ApplyReport;
  /** Files, packages, users, units or handlers changed (or would change, in check mode). */
  changed: boolean;
  exitCode: number | null;
  /** Raw output, for the per-host log. */
  stdout: string;
  stderr: string;
  ms: number;
}

export async function applyOverSsh(
  t: SshTarget,
  archive: BundleArchive,
  o: { check?: boolean; onEvent?: (kind: string, step: string | undefined) => void; onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void } = {},
): Promise<HostApplyResult> {
  const parser = new ApplyOutputParser(o.onEvent);
  const t0 = Date.now();
  const cmd = shJoin([...t.sudoArgv(), 'sh', '-c', bundleRunScript('apply', { env: 'live', check: o.check }), 'syncpi-apply']);
  const r = await t.exec(cmd, {
    stdin: archive.tar,
    onStdout: (d) => {
      parser.push(d);
      o.onOutput?.(d, 'stdout');
    },
    onStderr: (d) => o.onOutput?.(d, 'stderr'),
  });
  assertSudoWorked(t, r);
  const report = settleReport(parser.end(), { exitCode: r.code, signal: r.signal, stderr: r.stderr });
  return {
    report,
    changed: report.changes.length > 0 || ranHandlers(report).length > 0,
    exitCode: r.code,
    stdout: r.stdout,
    stderr: r.stderr,
    ms: Date.now() - t0,
  };
}
