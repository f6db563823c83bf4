/**
 * `syncpi build`: Plan → bootable SD image.
 *
 *   layer (cached by base + package set): Debian bootstrap, or a stock image with the packages
 *   installed in a chroot
 *   top (every build): copy the layer → grow → loop + mount → disk id and PARTUUID references →
 *   a Raspberry Pi OS base's first boot adapted (pios.ts) → apply the Plan → strip per-machine
 *   state → unmount → shrink + discard free blocks → export
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Plan } from '../plan/types.js';
import { formatBytes, type Reporter } from '../util/report.js';
import { withCleanup, type CleanupScope } from '../util/cleanup.js';
import { UserError } from '../util/errors.js';
import { hostMirror } from './mirror.js';
import { acquireBase } from './base.js';
import { bootstrapImage, type BootstrapTimes } from './bootstrap.js';
import { cacheDir, layerKey, layerPaths, readLayer, storeLayer, type LayerMeta } from './cache.js';
import { recipeVersion } from './recipe.js';
import { attachImage, mountDev, tempMountpoint } from './loop.js';
import { growFs, growImageFile, shrinkFs, truncateToRoot } from './resize.js';
import { bootMountPoint, fixPartitionRefs, setDiskId } from './layout.js';
import { applyPackages, customizeRoot } from './apply.js';
import { installedPackages } from './finish.js';
import { exportImage, partialName, SECRET_FILE_MODE, type ExportResult } from './export.js';
import { tool } from '../util/tool.js';
import { stageBoot, type StagedBoot } from './bootpart.js';
import { missingTargets, modelMatrix, type ModelMatrix } from '../hardware/models.js';

const MiB = 1024 * 1024;

export interface BuildOptions {
  plan: Plan;
  outDir: string;
  xz?: boolean;
  reporter: Reporter;
  /** false: the small variant without kernel, firmware and initramfs (Debian base only). */
  boot?: boolean;
  /** Ignore (and replace) a cached layer. */
  noCache?: boolean;
  /** Free space left in the root file system of the exported image. */
  headroomBytes?: number;
  /** The previous way, for benchmarks to compare against: emulated converger tools, no locale cache. */
  emulatedConverger?: boolean;
}

export interface BuildResult extends ExportResult {
  name: string;
  layer: { key: string; reused: boolean; ms: number; bootstrap?: BootstrapTimes };
  diskId: string;
  totalMs: number;
  packages: Array<{ name: string; version: string }>;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A new disk id per configuration: two appliances never share one, and a rebuild is reproducible. */
export function diskIdFor(plan: Plan): string {
  const id = createHash('sha256').update(`${plan.configHash}\0${plan.name}`).digest('hex').slice(0, 8);
  return id === '00000000' ? '5ec0ffee' : id;
}

async function copySparse(src: string, dst: string): Promise<void> {
  await tool('cp', ['--sparse=always', '--reflink=auto', src, dst]);
}

interface ResolvedBase {
  describe: Record<string, unknown>;
  mirror?: string;
  sha256?: string;
  img?: string;
}

async function resolveBase(plan: Plan, reporter: Reporter): Promise<ResolvedBase> {
  const b = plan.base;
  if (b.kind === 'debian') {
    const mirror = (b.mirror ?? hostMirror()).replace(/\/+$/, '');
    return { describe: { kind: 'debian', suite: b.suite, arch: b.arch, mirror }, mirror };
  }
  const acquired = await acquireBase(b.source, b.sha256, reporter);
  return { describe: { kind: 'image', source: b.source, sha256: acquired.sha256, arch: b.arch }, sha256: acquired.sha256, img: acquired.img };
}

/**
 * Mount partition 2 at a fresh directory and stage partition 1 (FAT, never mounted) into the
 * directory where that root expects its boot files.
 */
async function mountImage(scope: CleanupScope, dev: { partition(n: number): string }): Promise<{ root: string; boot: StagedBoot }> {
  const root = await tempMountpoint(scope);
  await mountDev(scope, dev.partition(2), root, 'mount:root');
  const bootDir = join(root, bootMountPoint(root));
  // whatever happens, the root must not keep the staged copy of the boot files
  scope.defer('boot:stage', async () => {
    for (const e of await readdir(bootDir).catch(() => [] as string[])) await rm(join(bootDir, e), { recursive: true, force: true });
  });
  const boot = await stageBoot(dev.partition(1), bootDir);
  return { root, boot };
}

async function buildLayer(opts: BuildOptions, base: ResolvedBase, key: string, boot: boolean): Promise<LayerMeta> {
  const { plan, reporter } = opts;
  const t0 = Date.now();
  const paths = layerPaths(key);
  const tmp = `${paths.img}.partial-${process.pid}`;
  return withCleanup(async (scope) => {
    scope.defer('layer:tmp', () => rm(tmp, { force: true }));
    let bootstrap: BootstrapTimes | undefined;
    let stripped: LayerMeta['stripped'];
    if (plan.base.kind === 'debian') {
      const workDir = join(cacheDir('work'), `${key}-${process.pid}`);
      bootstrap = await bootstrapImage(
        {
          suite: plan.base.suite,
          arch: plan.base.arch,
          mirror: base.mirror!,
          install: plan.packages.install,
          purge: plan.packages.purge,
          boot,
          workDir,
          reporter,
          scope,
        },
        tmp,
        '00000000',
      );
    } else {
      await reporter.step('copy base image', () => copySparse(base.img!, tmp));
      if (plan.packages.install.length || plan.packages.purge.length) {
        // package work needs room the stock image's root was cut to avoid
        await growImageFile(tmp, 2048 * MiB);
        await withCleanup(async (inner) => {
          const dev = await attachImage(inner, tmp);
          await growFs(dev.partition(2));
          const { root, boot } = await mountImage(inner, dev);
          const result = await reporter.step(
            `install ${plan.packages.install.length} and purge ${plan.packages.purge.length} package patterns`,
            () => applyPackages(root, plan, reporter, inner),
            (r) => `${r.purged.length} packages purged, ${formatBytes(r.freed)} freed`,
          );
          stripped = { purged: result.purged, freedBytes: result.freed };
          if (result.purged.length) reporter.info(`stripping freed ${formatBytes(result.freed)}: ${result.purged.join(' ')}`);
          // a kernel or firmware upgrade writes the boot partition
          await boot.writeBack();
        });
      }
    }
    const meta: LayerMeta = { key, created: new Date().toISOString(), base: base.describe, packages: [], buildMs: Date.now() - t0, ...(bootstrap ? { bootstrap: { ...bootstrap } } : {}), ...(stripped ? { stripped } : {}) };
    await storeLayer(tmp, meta);
    return meta;
  });
}

/**
 * The models the image boots on, from its staged boot partition; the build stops when the config
 * names one it does not (before the apply: nothing the apply does adds device trees or firmware).
 */
async function checkModels(plan: Plan, bootDir: string): Promise<ModelMatrix> {
  const matrix = modelMatrix(await readdir(bootDir), plan.base);
  const missing = missingTargets(plan.models, matrix);
  if (missing.length) {
    throw new UserError(
      `hardware.models: this image does not boot ${missing.map((m) => `${m.model} (${m.reason})`).join('; ')}; it boots ${matrix.boots.join(', ') || 'no Raspberry Pi'}`,
    );
  }
  return matrix;
}

export async function buildImage(opts: BuildOptions): Promise<BuildResult> {
  const t0 = Date.now();
  const { plan, reporter } = opts;
  const name = plan.name;
  if (!NAME_RE.test(name)) throw new UserError(`image name "${name}" is not usable as a file name: use letters, digits, ".", "_" and "-" (at most 64)`);
  const outDir = resolve(opts.outDir);
  if (existsSync(outDir) && !statSync(outDir).isDirectory()) throw new UserError(`--out ${opts.outDir} exists and is not a directory`);
  mkdirSync(outDir, { recursive: true });
  const boot = opts.boot ?? true;
  if (!boot && plan.base.kind !== 'debian') throw new UserError('the small variant without kernel exists only for the Debian base');

  const base = await resolveBase(plan, reporter);
  const key = layerKey({
    base: plan.base,
    ...(base.mirror ? { mirror: base.mirror } : {}),
    ...(base.sha256 ? { baseSha256: base.sha256 } : {}),
    packages: plan.packages,
    recipeVersion: recipeVersion(),
    boot,
  });
  let layer = opts.noCache ? undefined : await readLayer(key);
  const reused = layer !== undefined;
  const tLayer = Date.now();
  if (layer) reporter.info(`reusing cached base layer ${key} (built ${layer.created}; base + ${plan.packages.install.length} packages)`);
  else layer = await buildLayer(opts, base, key, boot);
  const layerMs = Date.now() - tLayer;

  const diskId = diskIdFor(plan);
  let packages: Array<{ name: string; version: string }> = [];
  const headroom = opts.headroomBytes ?? 256 * MiB;

  const result = await withCleanup(async (scope) => {
    const work = partialName(outDir, name, 'img');
    const tracked: string[] = [work];
    let done = false;
    scope.defer('out:partials', async () => {
      if (!done) for (const f of tracked) await rm(f, { force: true });
    });
    // created owner-only before a byte of the appliance's secrets can land in it; cp keeps the mode
    closeSync(openSync(work, 'wx', SECRET_FILE_MODE));
    await reporter.step('copy base layer', () => copySparse(layerPaths(key).img, work));
    await growImageFile(work, 512 * MiB);
    await setDiskId(work, diskId);

    const dev = await attachImage(scope, work, 'loop');
    await growFs(dev.partition(2));
    const { root, boot } = await mountImage(scope, dev);
    await fixPartitionRefs(root, boot.dir, diskId);
    const models = await checkModels(plan, boot.dir);

    await customizeRoot(root, boot.dir, plan, { reporter, scope, ...(opts.emulatedConverger ? { nativeTools: false, localeCache: false } : {}) });
    packages = await installedPackages(root);
    await reporter.step('write boot partition', () => boot.writeBack(), (changed) => (changed ? 'updated' : 'unchanged'));
    await scope.release('mount:root');

    const fsBytes = await reporter.step('shrink root file system', () => shrinkFs(dev.partition(2), headroom), (b) => `${Math.round(b / MiB)} MiB`);
    await scope.release('loop');
    await truncateToRoot(work, fsBytes);

    const exported = await exportImage({
      workImg: work,
      outDir,
      name,
      xz: !!opts.xz,
      reporter,
      track: (p) => tracked.push(p),
      manifest: {
        name,
        hostname: plan.hostname,
        configHash: plan.configHash,
        built: new Date().toISOString(),
        base: base.describe,
        layer: { key, reused },
        diskId,
        rootPartuuid: `${diskId}-02`,
        models: { ...(plan.models.length ? { targets: plan.models } : {}), boots: models.boots, excluded: models.excluded },
        packages,
        purged: plan.packages.purge,
        ...(layer.stripped ? { stripped: layer.stripped } : {}),
      },
    });
    done = true;
    return exported;
  });

  return {
    ...result,
    name,
    layer: { key, reused, ms: layerMs, ...(layer.bootstrap ? { bootstrap: layer.bootstrap } : {}) },
    diskId,
    totalMs: Date.now() - t0,
    packages,
  };
}
