/**
 * Apply and verify a bundle through any Target: one script run that unpacks the bundle from
 * stdin into a private temp dir, runs the converger there and removes it again.
 */
import type { Plan, PlanCheck } from '../plan/types.js';
import { buildBundle, bundleTar } from '../bundle/bundle.js';
import { APPLY_STEPS, ApplyOutputParser, exitText, parseVerifyOutput, type ApplyReport, type CheckResult } from '../bundle/protocol.js';
import { Failure } from '../util/errors.js';
import type { ProgressUpdate } from '../util/report.js';
import type { Target } from './target.js';

/** A bundle as it travels: one tar stream holding the converger beside the manifest and files. */
export interface BundleArchive {
  tar: Buffer;
}

/** The archive of a Plan's bundle, built once and sent to as many targets as need it. */
export async function archiveOf(plan: Plan): Promise<BundleArchive> {
  const bundle = await buildBundle(plan);
  // The bundle's tar holds apply.sh beside the manifest, at the archive's top level.
  return { tar: bundleTar(bundle) };
}

/** Serialises applies to one live host; a second syncpi waits instead of interleaving writes. */
const LOCK = '/run/syncpi-apply.lock';

/**
 * The script a target runs, as root. It contains no value from the Plan (those travel in the
 * tar), so it needs no quoting; the temp dir is 0700 because the bundle may hold secrets. A cut
 * connection closes its pipes: the next write raises SIGPIPE, which (like HUP/TERM) exits
 * through the EXIT trap so the unpacked bundle is removed.
 */
export function bundleRunScript(entry: 'apply' | 'verify', opts: { env: 'chroot' | 'live'; check?: boolean }): string {
  const flags = [`--${opts.env}`];
  if (entry === 'apply' && opts.check) flags.push('--check');
  return [
    'set -u',
    'umask 077',
    'd=$(mktemp -d "${TMPDIR:-/tmp}/syncpi-bundle.XXXXXX") || { printf "FAIL\\tupload\\t-\\tcannot create a temp dir\\n"; exit 1; }',
    `trap 'rm -rf "$d"' EXIT`,
    "trap 'exit 129' HUP PIPE",
    "trap 'exit 143' TERM",
    "trap 'exit 130' INT",
    'tar -x -f - -C "$d" 2>"$d/.tar-err" || {',
    '  rc=$?; while IFS= read -r l; do printf "OUT\\t%s\\n" "$l"; done <"$d/.tar-err"',
    '  printf "FAIL\\tupload\\t%s\\tthe bundle did not arrive whole\\n" "$rc"; exit 1',
    '}',
    ...(entry === 'apply' && opts.env === 'live'
      ? [
          `exec 9>${LOCK}`,
          'if command -v flock >/dev/null 2>&1 && ! flock -w 300 9; then printf "FAIL\\tlock\\t-\\tanother apply is still running on this host\\n"; exit 1; fi',
        ]
      : []),
    `sh "$d/${entry}.sh" ${flags.join(' ')} "$d"`,
    'rc=$?',
    'exit $rc',
  ].join('\n');
}

/**
 * Complete a parsed report with what the transport saw. A converger that failed without saying
 * so (cut off, killed, or exiting non-zero after its summary) still yields a failure.
 */
export function settleReport(report: ApplyReport, res: { exitCode: number | null; signal?: string | null; stderr: string }): ApplyReport {
  const stderr = res.stderr.trim() ? res.stderr.trim().split('\n').slice(-50) : [];
  if (report.failure) {
    if (report.failure.output.length === 0) report.failure.output = stderr;
    if (report.failure.exitCode === null && !report.steps.length) report.failure.exitCode = res.exitCode;
  } else if (res.exitCode !== 0) {
    const how = res.exitCode === null ? `was killed${res.signal ? ` by ${res.signal}` : ''}` : `exited ${res.exitCode}`;
    report.failure = { step: report.steps[report.steps.length - 1] ?? 'start', exitCode: res.exitCode, message: `the converger ${how} after reporting success`, output: stderr };
    report.ok = false;
  }
  return report;
}

/** A failed apply: the report says which step, its exit code and output. */
export class ApplyFailed extends Failure {
  readonly report: ApplyReport;
  constructor(target: string, report: ApplyReport) {
    const f = report.failure!;
    super(`apply on ${target} failed at step "${f.step}"${exitText(f)}: ${f.message}`, f.output);
    this.name = 'ApplyFailed';
    this.report = report;
  }
}

export interface ApplyOptions {
  check?: boolean;
  /** Progress in converger steps, e.g. a Reporter step's progress callback. */
  progress?: (u: ProgressUpdate) => void;
  /** Every protocol line as it arrives (per-host logs). */
  onLine?: (line: string) => void;
  /** Every protocol record as parsed: its tag and the step it belongs to (live rows). */
  onRecord?: (tag: string, step: string | undefined) => void;
  /** The script's stderr, once it ended, when it wrote any (per-host logs). */
  onStderr?: (text: string) => void;
}

/** Apply (or --check) the bundle on the target; throws ApplyFailed when a step fails. */
export async function applyBundle(target: Target, archive: BundleArchive, opts: ApplyOptions = {}): Promise<ApplyReport> {
  const parser = new ApplyOutputParser(opts.onRecord);
  const total = APPLY_STEPS.length;
  const res = await target.runScript(bundleRunScript('apply', { env: target.env, check: opts.check }), {
    stdin: archive.tar,
    onLine: (l) => {
      parser.line(l);
      opts.onLine?.(l);
      if (l.startsWith('STEP\t')) {
        const i = (APPLY_STEPS as readonly string[]).indexOf(l.slice(5));
        if (i >= 0) opts.progress?.({ done: i, total, unit: 'items' });
      }
    },
  });
  if (res.stderr) opts.onStderr?.(res.stderr);
  const report = settleReport(parser.report(), res);
  if (report.failure) throw new ApplyFailed(target.name, report);
  opts.progress?.({ done: total, total, unit: 'items' });
  return report;
}

export interface CheckOutcome {
  check: PlanCheck;
  status: CheckResult['status'];
  detail: string;
}

/**
 * Run the Plan's checks on the target. Checks that must run from the controlling machine
 * (http, ssh-password-refused) come back as "remote"; the SSH side runs those itself.
 */
export async function verifyBundle(target: Target, archive: BundleArchive, plan: Plan): Promise<CheckOutcome[]> {
  const res = await target.runScript(bundleRunScript('verify', { env: target.env }), { stdin: archive.tar });
  const out = parseVerifyOutput(res.stdout);
  if (!out.complete) {
    throw new Failure(`verify on ${target.name} did not complete (exit ${res.exitCode})`, [...res.stdout.split('\n').slice(-20), ...res.stderr.split('\n').slice(-20)]);
  }
  const byIndex = new Map(out.results.map((r) => [r.index, r]));
  return plan.checks.map((check, i) => {
    const r = byIndex.get(i);
    return r ? { check, status: r.status, detail: r.detail } : { check, status: 'fail' as const, detail: 'no result from the target' };
  });
}
