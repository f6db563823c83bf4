/**
 * `syncpi build`: Plan → bootable SD image.
 *
 *   base (cached): the Debian bootstrap of the recipe's packages with kernel and firmware, or a
 *   stock image checked by SHA-256
 *   packages layer (cached by base + the config's package lists): the base with the config's
 *   packages installed and purged by the converger in a chroot, from a cache of .debs
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
import { bootstrapImage, settleNetwork, type BootstrapTimes } from './bootstrap.js';
import { baseLayerKey, cacheDir, LAYER_FORMAT, layerPaths, nearestPackagesLayer, packageLists, packagesLayerKey, storeLayer, type LayerMeta } from './cache.js';
import { bindDebCache, debCacheDir, pruneDebCache } from './deb-cache.js';
import { pruneLayers, takeUpLayer, touchLayer } from './layer-prune.js';
import { recipeVersion } from './recipe.js';
import { attachImage, mountDev, tempMountpoint } from './loop.js';
import { growFs, growImageFile, shrinkFs, truncateToRoot } from './resize.js';
import { bootMountPoint, fixPartitionRefs, setDiskId } from './layout.js';
import { applyPackages, customizeRoot } from './apply.js';
import { dropAptState, installedPackages } from './finish.js';
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
  /** Ignore (and replace) the cached layers. */
  noCache?: boolean;
  /** Free space left in the root file system of the exported image. */
  headroomBytes?: number;
  /** The previous way, for benchmarks to compare against: emulated converger tools, no locale cache. */
  emulatedConverger?: boolean;
}

export interface BuildResult extends ExportResult {
  name: string;
  /** The packages layer, and the Debian base layer under it. */
  layer: { key: string; reused: boolean; ms: number; base?: { key: string; reused: boolean }; bootstrap?: BootstrapTimes };
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

interface BaseLayer {
  img: string;
  /** What a packages layer on it is keyed by: the base layer's key, or the image's SHA-256. */
  parent: string;
  debs: string;
  /** A Debian base layer's own record (its key is `parent`). */
  layer?: { reused: boolean; meta: LayerMeta };
}

interface LayerKeys {
  /** The Debian base layer's key; none for a stock image, which is its own base. */
  base?: string;
  /** What the packages layer is keyed on: the base layer's key, or the stock image's SHA-256. */
  parent: string;
  packages: string;
}

function layerKeys(plan: Plan, base: ResolvedBase): LayerKeys {
  const b = plan.base;
  const baseKey = b.kind === 'debian' ? baseLayerKey({ suite: b.suite, arch: b.arch, mirror: base.mirror!, recipeVersion: recipeVersion() }) : undefined;
  const parent = baseKey ?? base.sha256!;
  return { ...(baseKey ? { base: baseKey } : {}), parent, packages: packagesLayerKey({ parent, packages: plan.packages }) };
}

/** The cached layers a build of this plan would use (a stock base is fetched and checked for its digest). */
export async function planLayerKeys(plan: Plan, reporter: Reporter): Promise<LayerKeys> {
  return layerKeys(plan, await resolveBase(plan, reporter));
}

/** The base every packages layer of this suite and architecture starts from: bootstrapped once. */
async function debianBaseLayer(opts: BuildOptions, base: ResolvedBase, key: string): Promise<BaseLayer> {
  const { plan, reporter } = opts;
  if (plan.base.kind !== 'debian') throw new Error('debianBaseLayer: not a Debian base');
  const { suite, arch } = plan.base;
  const paths = layerPaths(key);
  const debs = debCacheDir({ kind: 'debian', mirror: base.mirror!, suite, arch });
  const cached = opts.noCache ? undefined : await takeUpLayer(key);
  if (cached) {
    reporter.info(`reusing cached base layer ${key} (Debian ${suite} ${arch}, built ${cached.created})`);
    return { img: paths.img, parent: key, debs, layer: { reused: true, meta: cached } };
  }
  const t0 = Date.now();
  const tmp = `${paths.img}.partial-${process.pid}`;
  const meta = await withCleanup(async (scope) => {
    scope.defer('layer:tmp', () => rm(tmp, { force: true }));
    const workDir = join(cacheDir('work'), `${key}-${process.pid}`);
    const bootstrap = await bootstrapImage({ suite, arch, mirror: base.mirror!, debs, workDir, reporter, scope }, tmp, '00000000');
    await pruneDebCache(debs);
    const m: LayerMeta = { key, format: LAYER_FORMAT, created: new Date().toISOString(), base: base.describe, buildMs: Date.now() - t0, bootstrap };
    await storeLayer(tmp, m);
    return m;
  });
  return { img: paths.img, parent: key, debs, layer: { reused: false, meta } };
}

/**
 * The config's package lists applied to a copy of the base, or of the cached packages layer that
 * already holds most of them: the layer a config-only rebuild starts from. Shrunk afterwards, so
 * a layer built on another stays the size of its content.
 */
async function buildPackagesLayer(opts: BuildOptions, base: ResolvedBase, parent: BaseLayer, key: string): Promise<LayerMeta> {
  const { plan, reporter } = opts;
  const t0 = Date.now();
  const paths = layerPaths(key);
  const tmp = `${paths.img}.partial-${process.pid}`;
  const on = opts.noCache ? undefined : await nearestPackagesLayer(parent.parent, plan.packages);
  if (on) {
    await touchLayer(on.key);
    reporter.info(`building on cached packages layer ${on.key}: ${on.lists!.install.length} of the ${packageLists(plan.packages).install.length} packages to install are in it`);
  }
  return withCleanup(async (scope) => {
    scope.defer('layer:tmp', () => rm(tmp, { force: true }));
    await reporter.step(on ? 'copy packages layer' : 'copy base', () => copySparse(on ? layerPaths(on.key).img : parent.img, tmp));
    let stripped: LayerMeta['stripped'] = on?.stripped;
    let installed: string[] | undefined = on?.installed;
    const debian = plan.base.kind === 'debian';
    if (debian || plan.packages.install.length || plan.packages.purge.length) {
      // package work needs room a stock image's root was cut to avoid
      await growImageFile(tmp, 2048 * MiB);
      await withCleanup(async (inner) => {
        const dev = await attachImage(inner, tmp);
        await growFs(dev.partition(2));
        const { root, boot } = await mountImage(inner, dev);
        await bindDebCache(inner, root, parent.debs);
        const result = await reporter.step(
          `install ${plan.packages.install.length} and purge ${plan.packages.purge.length} package patterns`,
          () => applyPackages(root, plan, reporter, inner),
          (r) => `${r.installed.length} installed, ${r.purged.length} purged, ${formatBytes(r.freed)} freed`,
        );
        // before anything empties the root's archive directory: it is the cache while bound
        await inner.release('debs:bind');
        installed = [...(installed ?? []), ...result.installed];
        stripped = { purged: [...(stripped?.purged ?? []), ...result.purged], freedBytes: (stripped?.freedBytes ?? 0) + result.freed };
        if (result.purged.length) reporter.info(`stripping freed ${formatBytes(result.freed)}: ${result.purged.join(' ')}`);
        if (debian) await settleNetwork(root, plan.base.arch, inner);
        await dropAptState(root);
        // a kernel or firmware upgrade writes the boot partition
        await boot.writeBack();
        await inner.release('mount:root');
        const fsBytes = await shrinkFs(dev.partition(2), 256 * MiB);
        await inner.release('loop');
        await truncateToRoot(tmp, fsBytes);
      });
      await pruneDebCache(parent.debs);
    }
    const meta: LayerMeta = {
      key,
      format: LAYER_FORMAT,
      created: new Date().toISOString(),
      base: base.describe,
      parent: parent.parent,
      lists: packageLists(plan.packages),
      ...(on ? { builtOn: on.key } : {}),
      buildMs: Date.now() - t0,
      ...(installed ? { installed } : {}),
      ...(stripped ? { stripped } : {}),
    };
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

/** The layer cache pruned after a build (layer-prune.ts); the image is made, so a failure here only warns. */
async function pruneCache(key: string, parent: string, reporter: Reporter): Promise<void> {
  try {
    const pruned = await pruneLayers([key, parent]);
    if (pruned.removed.length) {
      const bytes = pruned.removed.reduce((sum, r) => sum + r.bytes, 0);
      reporter.info(`layer cache: removed ${pruned.removed.length} layers no build used lately (${formatBytes(bytes)}): ${pruned.removed.map((r) => `${r.key} (${r.why})`).join(', ')}`);
    }
    if (pruned.leftovers.length) reporter.info(`layer cache: removed what killed builds left: ${pruned.leftovers.join(', ')}`);
  } catch (e) {
    reporter.warn(`layer cache: could not prune ${cacheDir('layers')}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export async function buildImage(opts: BuildOptions): Promise<BuildResult> {
  const t0 = Date.now();
  const { plan, reporter } = opts;
  const name = plan.name;
  if (!NAME_RE.test(name)) throw new UserError(`image name "${name}" is not usable as a file name: use letters, digits, ".", "_" and "-" (at most 64)`);
  const outDir = resolve(opts.outDir);
  if (existsSync(outDir) && !statSync(outDir).isDirectory()) throw new UserError(`--out ${opts.outDir} exists and is not a directory`);
  mkdirSync(outDir, { recursive: true });
  const base = await resolveBase(plan, reporter);
  const tLayer = Date.now();
  const keys = layerKeys(plan, base);
  const parent: BaseLayer = keys.base ? await debianBaseLayer(opts, base, keys.base) : { img: base.img!, parent: keys.parent, debs: debCacheDir({ kind: 'image', sha256: keys.parent }) };
  const key = keys.packages;
  let layer = opts.noCache || parent.layer?.reused === false ? undefined : await takeUpLayer(key);
  const reused = layer !== undefined;
  if (layer) {
    reporter.info(`reusing cached packages layer ${key} (built ${layer.created}; the base + ${plan.packages.install.length} packages, ${plan.packages.purge.length} purge patterns)`);
  } else layer = await buildPackagesLayer(opts, base, parent, key);
  const layerMs = Date.now() - tLayer;
  const baseLayer = parent.layer ? { key: parent.parent, reused: parent.layer.reused } : undefined;

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
        layer: { key, reused, ...(baseLayer ? { base: baseLayer } : {}) },
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

  await pruneCache(key, parent.parent, reporter);

  return {
    ...result,
    name,
    layer: { key, reused, ms: layerMs, ...(baseLayer ? { base: baseLayer } : {}), ...(parent.layer?.meta.bootstrap ? { bootstrap: parent.layer.meta.bootstrap } : {}) },
    diskId,
    totalMs: Date.now() - t0,
    packages,
  };
}
