/**
 * Apply and verify a bundle through any Target: one script run that unpacks the bundle from
 * stdin into a private temp dir, runs the converger there and removes it again.
 */
import type { Plan, PlanCheck } from '../plan/types.js';
import { bundleTar, type Bundle } from '../bundle/bundle.js';
import { APPLY_STEPS, ApplyOutputParser, parseVerifyOutput, type ApplyReport, type CheckResult } from '../bundle/protocol.js';
import { Failure } from '../util/errors.js';
import type { ProgressUpdate } from '../util/report.js';
import type { Target } from './target.js';

/**
 * The script a target runs. It contains no value from the Plan (those travel in the tar), so it
 * needs no quoting; the temp dir is 0700 because the bundle may hold secrets.
 */
export function bundleRunScript(entry: 'apply' | 'verify', opts: { env: 'chroot' | 'live'; check?: boolean }): string {
  const flags = [`--${opts.env}`];
  if (entry === 'apply' && opts.check) flags.push('--check');
  return [
    'set -u',
    'umask 077',
    'd=$(mktemp -d "${TMPDIR:-/tmp}/syncpi-bundle.XXXXXX") || { printf \'FAIL\\tupload\\t-\\tcannot create a temp dir\\n\'; exit 1; }',
    'trap \'rm -rf "$d"\' EXIT',
    'trap \'rm -rf "$d"; exit 129\' HUP',
    'trap \'rm -rf "$d"; exit 130\' INT',
    'trap \'rm -rf "$d"; exit 143\' TERM',
    'tar -x -f - -C "$d" 2>"$d/.tar-err" || { printf \'FAIL\\tupload\\t-\\tcannot unpack the bundle: %s\\n\' "$(head -c 300 "$d/.tar-err" | tr "\\n\\t" "  ")"; exit 1; }',
    `sh "$d/${entry}.sh" ${flags.join(' ')} "$d"`,
    'rc=$?',
    'exit $rc',
  ].join('\n');
}

/** A failed apply: the report says which step, its exit code and output. */
export class ApplyFailed extends Failure {
  readonly report: ApplyReport;
  constructor(target: string, report: ApplyReport) {
    const f = report.failure!;
    const code = f.exitCode === null ? '' : ` (exit ${f.exitCode})`;
    super(`apply on ${target} failed at step "${f.step}"${code}: ${f.message}`, f.output);
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
}

/** Apply (or --check) the bundle on the target; throws ApplyFailed when a step fails. */
export async function applyBundle(target: Target, bundle: Bundle, opts: ApplyOptions = {}): Promise<ApplyReport> {
  const parser = new ApplyOutputParser();
  const total = APPLY_STEPS.length;
  const res = await target.runScript(bundleRunScript('apply', { env: target.env, check: opts.check }), {
    stdin: bundleTar(bundle),
    onLine: (l) => {
      parser.line(l);
      opts.onLine?.(l);
      if (l.startsWith('STEP\t')) {
        const i = (APPLY_STEPS as readonly string[]).indexOf(l.slice(5));
        if (i >= 0) opts.progress?.({ done: i, total, unit: 'items' });
      }
    },
  });
  const report = parser.report();
  if (report.failure) {
    if (report.failure.output.length === 0 && res.stderr.trim()) report.failure.output = res.stderr.trim().split('\n').slice(-50);
    if (report.failure.exitCode === null && !report.steps.length) report.failure.exitCode = res.exitCode;
    throw new ApplyFailed(target.name, report);
  }
  if (res.exitCode !== 0) {
    throw new Failure(`apply on ${target.name}: the converger exited ${res.exitCode} after reporting success`, res.stderr.split('\n'));
  }
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
export async function verifyBundle(target: Target, bundle: Bundle, plan: Plan): Promise<CheckOutcome[]> {
  const res = await target.runScript(bundleRunScript('verify', { env: target.env }), { stdin: bundleTar(bundle) });
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
