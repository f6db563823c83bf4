/**
 * Apply a Plan to an image's root filesystem (the `build` path) and run its checks offline
 * (`syncpi verify` on a rootfs). Both go through the same bundle and converger as `provision`.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Plan } from '../plan/types.js';
import type { ApplyReport } from '../bundle/protocol.js';
import type { CleanupScope } from '../util/cleanup.js';
import { Failure } from '../util/errors.js';
import type { Reporter } from '../util/report.js';
import { tool } from '../util/tool.js';
import { applyBundle, archiveOf, verifyBundle, type CheckOutcome } from './apply.js';
import { withChroot, type Arch } from './chroot.js';

export interface RootfsApplyOptions {
  arch: Arch;
  check?: boolean;
  reporter: Reporter;
  scope?: CleanupScope;
  /** Every protocol line (for a build log). */
  onLine?: (line: string) => void;
  /** See ChrootOptions.nativeTools. */
  nativeTools?: boolean;
}

/** Bundles whose run was killed hard leave their temp dir (with secrets) in the image's /tmp. */
function removeStaleBundles(rootfs: string): void {
  const tmp = join(rootfs, 'tmp');
  let names: string[] = [];
  try {
    names = readdirSync(tmp);
  } catch {
    return;
  }
  for (const n of names) {
    if (n.startsWith('syncpi-bundle.') || n.startsWith('syncpi-apply.')) rmSync(join(tmp, n), { recursive: true, force: true });
  }
}

/**
 * Files the plan gives a validator (the firewall: nft -c) are checked on this machine before an
 * image gets them. On a live host the converger runs the validator itself, before the rename;
 * in an image's chroot it cannot: a foreign architecture runs under qemu-user, whose emulated
 * programs cannot open the netlink socket nft -c needs. An image with a ruleset that does not
 * load would boot with no firewall at all, so a refused file fails the build.
 */
export async function validateOnHost(plan: Plan): Promise<void> {
  for (const f of plan.files) {
    if (!f.validate?.length) continue;
    const dir = mkdtempSync(join(tmpdir(), 'syncpi-validate-'));
    try {
      const candidate = join(dir, 'candidate');
      writeFileSync(candidate, f.content, { mode: 0o600 });
      const [cmd, ...args] = f.validate.map((a) => (a === '%s' ? candidate : a));
      try {
        await tool(cmd!, args);
      } catch (e) {
        if (!(e instanceof Failure)) throw e;
        throw new Failure(`the plan's ${f.path} is refused by ${f.validate.join(' ')}: ${e.message}`, e.details, { cause: e });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

export async function applyToRootfs(rootfs: string, plan: Plan, opts: RootfsApplyOptions): Promise<ApplyReport> {
  const archive = await archiveOf(plan);
  await validateOnHost(plan);
  const label = opts.check ? 'check plan against rootfs' : 'apply plan to rootfs';
  return opts.reporter.step(
    label,
    async (progress) =>
      withChroot(rootfs, { arch: opts.arch, scope: opts.scope, nativeTools: opts.nativeTools }, async (target) => {
        try {
          return await applyBundle(target, archive, { check: opts.check, progress, onLine: opts.onLine });
        } finally {
          removeStaleBundles(rootfs);
        }
      }),
    (r) => `${r.counts.changes} change${r.counts.changes === 1 ? '' : 's'}`,
  );
}

/**
 * The Plan's checks judged from the files of a rootfs. Checks that need a running system come
 * back as "skip"; those that need the controlling machine (http, ssh) as "skip" too, since a
 * rootfs has no network presence.
 */
export async function verifyRootfs(rootfs: string, plan: Plan, opts: { arch: Arch; reporter: Reporter; scope?: CleanupScope }): Promise<CheckOutcome[]> {
  const archive = await archiveOf(plan);
  return opts.reporter.step(
    'verify rootfs',
    async () =>
      withChroot(rootfs, { arch: opts.arch, scope: opts.scope }, async (target) => {
        try {
          const out = await verifyBundle(target, archive, plan);
          return out.map((o) => (o.status === 'remote' ? { ...o, status: 'skip' as const, detail: 'needs a running system' } : o));
        } finally {
          removeStaleBundles(rootfs);
        }
      }),
    (r) => `${r.filter((x) => x.status === 'pass').length} passed, ${r.filter((x) => x.status === 'fail').length} failed, ${r.filter((x) => x.status === 'skip').length} skipped`,
  );
}
