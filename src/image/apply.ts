/**
 * What the image pipeline does inside the image's root: package work for the cached layer, and
 * the Plan itself through the shared converger (src/targets/rootfs.ts, the same provision/
 * scripts `syncpi provision` runs over SSH), both in the shared chroot target.
 */
import type { Plan } from '../plan/types.js';
import type { Reporter } from '../util/report.js';
import type { CleanupScope } from '../util/cleanup.js';
import { Failure } from '../util/errors.js';
import { withChroot, type ChrootTarget, type Arch } from '../targets/chroot.js';
import { applyToRootfs } from '../targets/rootfs.js';

async function must(t: ChrootTarget, argv: string[]): Promise<string> {
  const r = await t.exec(argv);
  if (r.exitCode !== 0) throw new Failure(`${argv.slice(0, 2).join(' ')} failed in the image (exit ${r.exitCode})`, r.stderr.trim().split('\n').slice(-15));
  return r.stdout;
}

/** dpkg-style package pattern (bluez*, rpd-?) against a name. */
export function globMatch(pattern: string, name: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(name);
}

const APT = ['-y', '-q', '-o', 'Dpkg::Options::=--force-confold', '-o', 'Dpkg::Options::=--force-confdef'];

/** Install and purge packages in a stock image: the layer step, run once per layer key. */
export async function applyPackages(root: string, arch: Arch, install: string[], purge: string[], scope: CleanupScope): Promise<void> {
  await withChroot(root, { arch, scope }, async (t) => {
    if (install.length > 0) {
      await must(t, ['apt-get', 'update', '-q']);
      await must(t, ['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'install', ...APT, '--no-install-recommends', ...install]);
    }
    if (purge.length > 0) {
      const out = await must(t, ['dpkg-query', '-W', '-f', '${Package} ${db:Status-Status}\n']);
      const have = new Set(out.split('\n').filter((l) => l.endsWith(' installed')).map((l) => l.split(' ')[0]));
      const present = [...have].filter((name): name is string => !!name && purge.some((pattern) => globMatch(pattern, name)));
      if (present.length > 0) await must(t, ['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'purge', ...APT, ...present]);
      await must(t, ['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'autoremove', '--purge', ...APT]);
    }
  });
}

/** Apply everything of the Plan on top of the layer (its packages are already in the layer). */
export async function applyPlan(root: string, plan: Plan, reporter: Reporter, scope: CleanupScope): Promise<void> {
  await applyToRootfs(root, plan, { arch: plan.base.arch, reporter, scope });
}
