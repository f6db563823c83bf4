/**
 * What the image pipeline does inside the image's root: package work for the cached layer, and
 * the Plan itself through the shared converger (src/targets/rootfs.ts, the same provision/
 * scripts `syncpi provision` runs over SSH), both in the shared chroot target.
 */
import type { Plan } from '../plan/types.js';
import type { Reporter } from '../util/report.js';
import type { CleanupScope } from '../util/cleanup.js';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { applyToRootfs } from '../targets/rootfs.js';
import type { Arch } from '../targets/chroot.js';
import { adoptPiOsBase } from './pios.js';
import { finishRoot } from './finish.js';
import { openLocaleCache } from './locale-cache.js';

/** The package part of a Plan alone: what a packages layer holds. */
export function packagesOnly(plan: Plan): Plan {
  return { ...plan, users: [], dirs: [], files: [], units: { enable: [], disable: [], mask: [] }, sysctls: {}, handlers: [], checks: [] };
}

/** Installed-Size (bytes) of every package, read from the image's dpkg database. */
function installedSizes(root: string): Map<string, number> {
  const sizes = new Map<string, number>();
  for (const stanza of readFileSync(join(root, 'var/lib/dpkg/status'), 'utf8').split('\n\n')) {
    const name = /^Package: (\S+)$/m.exec(stanza)?.[1];
    const kib = /^Installed-Size: (\d+)$/m.exec(stanza)?.[1];
    if (name && kib) sizes.set(name, Number(kib) * 1024);
  }
  return sizes;
}

/**
 * dpkg options for a build only, never for the appliance: a tree that becomes a layer or nothing
 * needs no sync of every file dpkg writes. The recipe's bootstrap writes and removes the same file
 * (image/debian/hooks/extract.sh, customize.sh).
 */
export const BUILD_DPKG_CFG = 'etc/dpkg/dpkg.cfg.d/syncpi-build';

/**
 * Install and purge a config's packages on its base: the packages layer, built once per layer key. It goes
 * through the same converger as everything else, so its protections hold here too: Essential and
 * required packages, and whatever the Plan installs or keeps, are never removed.
 * Returns the bytes the purge freed.
 */
export async function applyPackages(root: string, plan: Plan, reporter: Reporter, scope: CleanupScope): Promise<{ freed: number; purged: string[]; installed: string[] }> {
  // Measured as apt does ("… will be freed"): the purged packages' Installed-Size. The
  // filesystem's own count would net out the package lists apt-get update downloads.
  const sizes = installedSizes(root);
  const cfg = join(root, BUILD_DPKG_CFG);
  mkdirSync(dirname(cfg), { recursive: true });
  writeFileSync(cfg, 'force-unsafe-io\n');
  scope.defer('dpkg:build-cfg', () => rmSync(cfg, { force: true }));
  const report = await applyToRootfs(root, packagesOnly(plan), { arch: plan.base.arch, reporter, scope });
  await scope.release('dpkg:build-cfg');
  const of = (action: string) => report.changes.filter((c) => c.kind === 'package' && c.action === action).map((c) => c.target);
  const purged = of('purged');
  const freed = purged.reduce((sum, name) => sum + (sizes.get(name) ?? 0), 0);
  return { freed, purged, installed: of('installed') };
}

/**
 * Everything a build does in the mounted root on top of the layer (whose packages are already
 * in): a stock base's own first-boot machinery made to agree with the appliance, the Plan, then
 * the per-machine state stripped. `bootDir` holds the staged boot partition; `arch` is the
 * Plan's unless a caller runs a root of another architecture (the tests' amd64 fixtures).
 */
export async function customizeRoot(
  root: string,
  bootDir: string,
  plan: Plan,
  o: { reporter: Reporter; scope: CleanupScope; arch?: Arch; nativeTools?: boolean; localeCache?: boolean },
): Promise<void> {
  const { reporter, scope } = o;
  if (plan.base.kind === 'image') {
    const adopted = await reporter.step('adapt the base\'s first-boot machinery', () => adoptPiOsBase(root, bootDir, plan), (d) => (d.length ? `${d.length} changes` : 'not Raspberry Pi OS: nothing to adapt'));
    for (const line of adopted) reporter.info(`Raspberry Pi OS base: ${line}`);
  }
  const locales = o.localeCache === false ? undefined : await openLocaleCache(root, plan);
  if (locales?.seeded) reporter.info('locales: the compiled archive for this locale.gen is cached; locale-gen has nothing to do');
  const report = await applyToRootfs(root, plan, { arch: o.arch ?? plan.base.arch, reporter, scope, nativeTools: o.nativeTools });
  await locales?.keep(report);
  await reporter.step('remove caches, logs, machine-id and SSH host keys', () => finishRoot(root));
}
