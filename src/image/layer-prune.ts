/**
 * Keep the layer cache from growing without end. Every new package list makes a packages layer
 * of well over a gigabyte, and a changed recipe makes a new base layer that the old one is never
 * read again after: a user trying packages one at a time would fill the disk. The cache keeps the
 * layers used most recently (a layer's meta file is touched whenever a build uses it) and the
 * bases those stand on; whatever a build still running holds, it leaves, and so it does with the
 * layers of a newer syncpi sharing the cache.
 */
import { existsSync, readdirSync, statSync, type Stats } from 'node:fs';
import { readFile, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir, LAYER_FORMAT, layerPaths, readLayer, type LayerMeta } from './cache.js';
import { removeTree } from './bootstrap.js';
import { dirInUse, unmountBelow } from './loop.js';

/** Packages layers and base layers kept, most recently used first (the bases under kept packages layers stay as well). */
export const KEEP_LAYERS = { packages: 4, bases: 2 };

/**
 * How old a layer image without its record, or a record being written, must be to count as left
 * by a killed build: storeLayer writes the record right after it moves the image in.
 */
const STRAY_AFTER_MS = 60 * 60_000;

/** A build used this layer: it is the last to go. */
export async function touchLayer(key: string): Promise<void> {
  const now = new Date();
  await utimes(layerPaths(key).meta, now, now).catch(() => undefined);
}

/** A cached layer a build is about to use: touched before it is read, so a prune running meanwhile sees it taken up. */
export async function takeUpLayer(key: string): Promise<LayerMeta | undefined> {
  await touchLayer(key);
  return readLayer(key);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A regular file's status, undefined when it is gone (another build's prune) or no file. */
function fileStat(path: string): Stats | undefined {
  const st = statSync(path, { throwIfNoEntry: false });
  return st?.isFile() ? st : undefined;
}

interface Entry {
  key: string;
  meta?: LayerMeta;
  usedMs: number;
  bytes: number;
}

export interface PruneResult {
  removed: Array<{ key: string; bytes: number; why: string }>;
  /** The leftovers of builds that were killed: partial layer images, bootstrap work trees, layer images without a record. */
  leftovers: string[];
}

/**
 * Remove the layers beyond `keep`, those of an older layer format or with an unreadable record,
 * and what killed builds left. `protect`: the layers the calling build uses, kept whatever their age.
 */
export async function pruneLayers(protect: readonly string[], keep = KEEP_LAYERS): Promise<PruneResult> {
  const dir = cacheDir('layers');
  const result: PruneResult = { removed: [], leftovers: [] };
  const names = readdirSync(dir);
  const now = Date.now();

  // a build writes KEY.img.partial-PID and works in work/KEY-PID; the PID says whether it still runs
  for (const n of names) {
    const st = fileStat(join(dir, n));
    if (!st) continue;
    const m = /\.partial-(\d+)$/.exec(n);
    const stray = m ? !alive(Number(m[1])) : /\.json\.tmp$/.test(n) && now - st.mtimeMs > STRAY_AFTER_MS;
    if (stray) {
      await rm(join(dir, n), { force: true });
      result.leftovers.push(join(dir, n));
    }
  }
  const work = cacheDir('work');
  for (const n of readdirSync(work)) {
    const m = /-(\d+)$/.exec(n);
    // mmdebstrap outlives a build killed outright: its tree is not left until nothing works in it
    if (!m || alive(Number(m[1])) || (await dirInUse(join(work, n)))) continue;
    await unmountBelow(join(work, n));
    await removeTree(join(work, n));
    result.leftovers.push(join(work, n));
  }

  const entries: Entry[] = [];
  for (const n of names.filter((x) => x.endsWith('.img'))) {
    const key = n.slice(0, -'.img'.length);
    const p = layerPaths(key);
    const img = fileStat(p.img);
    if (!img) continue;
    const usedMs = fileStat(p.meta)?.mtimeMs;
    if (usedMs === undefined) {
      if (now - img.mtimeMs > STRAY_AFTER_MS && !existsSync(p.meta)) {
        await rm(p.img, { force: true });
        result.leftovers.push(p.img);
      }
      continue;
    }
    let meta: LayerMeta | undefined;
    try {
      meta = JSON.parse(await readFile(p.meta, 'utf8')) as LayerMeta;
    } catch {
      meta = undefined; // unreadable, or removed a moment ago
    }
    entries.push({ key, meta, usedMs, bytes: img.blocks * 512 });
  }
  const recent = (a: Entry, b: Entry) => b.usedMs - a.usedMs;
  const kept = new Set(protect);
  const why = new Map<string, string>();
  // a newer syncpi's layers are its own business
  const current = entries.filter((e) => e.meta?.format === LAYER_FORMAT);
  for (const e of entries) {
    if (!e.meta) why.set(e.key, 'an unreadable record');
    else if ((e.meta.format ?? 0) < LAYER_FORMAT) why.set(e.key, 'an older layer format');
    else if (e.meta.format !== LAYER_FORMAT) kept.add(e.key);
  }
  // a packages layer is read only on top of its base as it is now: once that base is rebuilt or gone, so is it
  const present = new Set(current.map((e) => e.key));
  const orphan = (e: Entry) => e.meta!.base?.kind === 'debian' && !present.has(e.meta!.parent!);
  for (const e of current) if (e.meta!.parent !== undefined && orphan(e)) why.set(e.key, 'its base layer is gone');
  const packages = current.filter((e) => e.meta!.parent !== undefined && !orphan(e)).sort(recent);
  const bases = current.filter((e) => e.meta!.parent === undefined).sort(recent);
  for (const e of packages.slice(0, keep.packages)) kept.add(e.key);
  for (const e of packages.slice(keep.packages)) why.set(e.key, `not among the ${keep.packages} packages layers used last`);
  for (const e of packages) if (kept.has(e.key)) kept.add(e.meta!.parent!);
  for (const e of bases.slice(0, keep.bases)) kept.add(e.key);
  for (const e of bases.slice(keep.bases)) why.set(e.key, `not among the ${keep.bases} base layers used last, nor under a kept packages layer`);

  for (const e of entries) {
    if (kept.has(e.key)) continue;
    const p = layerPaths(e.key);
    // a build that took it up meanwhile touched it: it stays
    if (fileStat(p.meta)?.mtimeMs !== e.usedMs) continue;
    // the record first: without it the layer is absent to any build that looks now
    await rm(p.meta, { force: true });
    await rm(p.img, { force: true });
    result.removed.push({ key: e.key, bytes: e.bytes, why: why.get(e.key) ?? 'unused' });
  }
  return result;
}
