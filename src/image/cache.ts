/**
 * The build cache: downloaded base images (by SHA-256) and finished layers (base + packages,
 * by content hash). Entries are written under a temporary name and renamed into place, so an
 * interrupted build never leaves an entry that looks complete.
 */
import type { BootstrapTimes } from './bootstrap.js';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { PlanBase, PlanPackages } from '../plan/types.js';

export function cacheRoot(): string {
  const base = process.env.XDG_CACHE_HOME && process.env.XDG_CACHE_HOME.startsWith('/') ? process.env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(base, 'syncpi');
}

export function cacheDir(kind: 'downloads' | 'bases' | 'layers' | 'work' | 'locales'): string {
  const d = join(cacheRoot(), kind);
  mkdirSync(d, { recursive: true });
  return d;
}

/** Bump when the layer's on-disk shape changes in a way the recipe hash does not capture. */
export const LAYER_FORMAT = 1;

export interface LayerKeyInput {
  base: PlanBase;
  /** Resolved mirror for a Debian base (part of the key: another mirror may carry other versions). */
  mirror?: string;
  /** SHA-256 of the base image file for an image base. */
  baseSha256?: string;
  packages: Pick<PlanPackages, 'install' | 'purge'>;
  recipeVersion: string;
  /** false for the small variant without kernel and firmware. */
  boot: boolean;
}

export function layerKey(k: LayerKeyInput): string {
  const canon = {
    format: LAYER_FORMAT,
    base:
      k.base.kind === 'debian'
        ? { kind: 'debian', suite: k.base.suite, arch: k.base.arch, mirror: k.mirror ?? '' }
        : { kind: 'image', sha256: k.baseSha256 ?? '', arch: k.base.arch },
    install: [...new Set(k.packages.install)].sort(),
    purge: [...new Set(k.packages.purge)].sort(),
    recipe: k.base.kind === 'debian' ? k.recipeVersion : '',
    boot: k.boot,
  };
  return createHash('sha256').update(JSON.stringify(canon)).digest('hex').slice(0, 32);
}

export interface LayerMeta {
  key: string;
  created: string;
  base: Record<string, unknown>;
  packages: Array<{ name: string; version: string }>;
  buildMs: number;
  bootstrap?: BootstrapTimes;
  /** What stripping removed from a stock base, and the space it freed. */
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
