/**
 * The build cache: downloaded base images (by SHA-256), finished layers (the Debian base, and a
 * config's packages on a base, by content hash) and the .debs they were installed from. Entries
 * are written under a temporary name and renamed into place, so an interrupted build never leaves
 * an entry that looks complete.
 */
import type { BootstrapTimes } from './bootstrap.js';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { PlanPackages } from '../plan/types.js';

export function cacheRoot(): string {
  const base = process.env.XDG_CACHE_HOME && process.env.XDG_CACHE_HOME.startsWith('/') ? process.env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(base, 'syncpi');
}

export function cacheDir(kind: 'downloads' | 'bases' | 'layers' | 'work' | 'locales' | 'debs'): string {
  const d = join(cacheRoot(), kind);
  mkdirSync(d, { recursive: true });
  return d;
}

/** Bump when a layer's on-disk shape changes in a way its key does not capture. */
export const LAYER_FORMAT = 2;

function hashKey(canon: unknown): string {
  return createHash('sha256').update(JSON.stringify(canon)).digest('hex').slice(0, 32);
}

/**
 * The Debian base layer: the recipe's packages with kernel and firmware, the same for every
 * config of that suite and architecture. The mirror is part of it: another mirror may carry
 * other versions.
 */
export function baseLayerKey(k: { suite: string; arch: string; mirror: string; recipeVersion: string }): string {
  return hashKey({ format: LAYER_FORMAT, kind: 'debian', suite: k.suite, arch: k.arch, mirror: k.mirror, recipe: k.recipeVersion });
}

export type PackageLists = Pick<PlanPackages, 'install' | 'purge' | 'keep'>;

/** The lists as a packages layer records them: each sorted, without repeats. */
export function packageLists(p: PackageLists): PackageLists {
  const set = (l: string[]) => [...new Set(l)].sort();
  return { install: set(p.install), purge: set(p.purge), keep: set(p.keep) };
}

/**
 * The packages layer: a config's own package lists applied on top of its parent, the Debian base
 * layer (by its key) or a stock image (by its SHA-256). A new package rebuilds only this layer.
 */
export function packagesLayerKey(k: { parent: string; packages: PackageLists }): string {
  // keep is part of it: a kept package is spared by the purge
  return hashKey({ format: LAYER_FORMAT, parent: k.parent, ...packageLists(k.packages) });
}

export interface LayerMeta {
  key: string;
  format?: number;
  created: string;
  base: Record<string, unknown>;
  /** A packages layer's parent: the base layer's key, or the stock image's SHA-256. */
  parent?: string;
  buildMs: number;
  bootstrap?: BootstrapTimes;
  /** A packages layer's lists (packageLists), and the cached packages layer it was built on, if any. */
  lists?: PackageLists;
  builtOn?: string;
  /** What the packages step installed and removed, and the space the removal freed. */
  installed?: string[];
  stripped?: { purged: string[]; freedBytes: number };
}

export function layerPaths(key: string): { img: string; meta: string } {
  const d = cacheDir('layers');
  return { img: join(d, `${key}.img`), meta: join(d, `${key}.json`) };
}

export async function readLayer(key: string): Promise<LayerMeta | undefined> {
  const p = layerPaths(key);
  if (!existsSync(p.img) || !existsSync(p.meta)) return undefined;
  try {
    return JSON.parse(await readFile(p.meta, 'utf8')) as LayerMeta;
  } catch {
    return undefined;
  }
}

/** Move a finished layer image into the cache; the meta file is written last and marks it complete. */
export async function storeLayer(tmpImg: string, meta: LayerMeta): Promise<void> {
  const p = layerPaths(meta.key);
  await rm(p.meta, { force: true });
  await rename(tmpImg, p.img);
  await writeFile(`${p.meta}.tmp`, JSON.stringify(meta, null, 2) + '\n');
  await rename(`${p.meta}.tmp`, p.meta);
}

/**
 * The cached packages layer on the same parent that a new one can be built on: the same purge
 * and keep lists, an install list contained in the new one, the most of it. Installing the rest
 * on it gives the packages the whole list would, and costs only the new ones.
 */
export async function nearestPackagesLayer(parent: string, lists: PackageLists): Promise<LayerMeta | undefined> {
  const want = packageLists(lists);
  const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  let best: LayerMeta | undefined;
  for (const f of (await readdir(cacheDir('layers'))).filter((n) => n.endsWith('.json')).sort()) {
    const meta = await readLayer(f.slice(0, -'.json'.length));
    const l = meta?.lists;
    if (!meta || !l || meta.parent !== parent || meta.format !== LAYER_FORMAT) continue;
    if (!same(l.purge, want.purge) || !same(l.keep, want.keep) || !l.install.every((p) => want.install.includes(p))) continue;
    if (!best || l.install.length > best.lists!.install.length) best = meta;
  }
  return best;
}
