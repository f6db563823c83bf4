/**
 * The .debs layers are installed from, kept between builds: a second cold build, or a packages
 * layer rebuilt for one more package, finds what it needs here and fetches only the rest. One
 * directory per package source (a mirror's suite and architecture, or a stock image), since two
 * sources may ship different files under one name. Each package keeps its highest version only,
 * so the directory stays the size of one build's set.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, chownSync, chmodSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { execa } from 'execa';
import { cacheDir } from './cache.js';
import { mountDev } from './loop.js';
import { shq } from '../util/shell.js';
import type { CleanupScope } from '../util/cleanup.js';

const ARCHIVES = 'var/cache/apt/archives';

/** Where a layer's packages come from: a Debian mirror's suite and arch, or a stock image's own sources. */
export type DebSource = { kind: 'debian'; mirror: string; suite: string; arch: string } | { kind: 'image'; sha256: string };

/** The cache directory of one package source. */
export function debCacheDir(source: DebSource): string {
  const id = source.kind === 'debian' ? `debian ${source.mirror} ${source.suite} ${source.arch}` : `image ${source.sha256}`;
  const d = join(cacheDir('debs'), createHash('sha256').update(id).digest('hex').slice(0, 16));
  mkdirSync(d, { recursive: true });
  return d;
}

/** Shell: link (or, across file systems, copy) each .deb of $1 into $2 that $2 lacks. */
const LINK_DEBS = 'for f in "$1"/*.deb; do [ -e "$f" ] || continue; d="$2/${f##*/}"; [ -e "$d" ] || ln "$f" "$d" 2>/dev/null || cp -p "$f" "$d" || exit 1; done';

/**
 * mmdebstrap arguments that seed its chroot's archive directory from the cache and bring what the
 * bootstrap fetched back. mmdebstrap installs from apt's own download list, so extra files in the
 * directory are never installed; essential/unlink is skipped so the essential set is kept too.
 * Hard links, not mmdebstrap's sync-in/sync-out, which stream every byte through its hook
 * protocol: 190 MiB took 52 s in and 36 s out. apt never writes a .deb in place, so a link is as
 * safe as a copy.
 */
export function mmdebstrapCacheArgs(dir: string): string[] {
  const link = (from: string, to: string) => `set -- ${from} ${to} && ${LINK_DEBS}`;
  return [
    '--skip=essential/unlink',
    `--setup-hook=mkdir -p "$1/${ARCHIVES}" && ${link(shq(dir), `"$1/${ARCHIVES}"`)}`,
    `--customize-hook=${link(`"$1/${ARCHIVES}"`, shq(dir))}`,
  ];
}

/**
 * Bind the cache over the root's archive directory while the caller's scope lasts, so the root's
 * own apt-get reads from and downloads into it. apt fetches as its _apt user: partial/ gets the
 * owner and mode the root's own one has.
 */
export async function bindDebCache(scope: CleanupScope, root: string, dir: string): Promise<void> {
  const inside = join(root, ARCHIVES);
  mkdirSync(join(inside, 'partial'), { recursive: true });
  const own = statSync(join(inside, 'partial'));
  mkdirSync(join(dir, 'partial'), { recursive: true });
  chownSync(join(dir, 'partial'), own.uid, own.gid);
  chmodSync(join(dir, 'partial'), own.mode & 0o7777);
  await mountDev(scope, dir, inside, 'debs:bind', 'bind');
}

/** name, version and arch of a .deb file name as apt writes it (name_version_arch.deb, ':' as %3a). */
export function parseDebName(file: string): { name: string; version: string; arch: string } | undefined {
  const m = /^([^_]+)_([^_]+)_([^_]+)\.deb$/.exec(file);
  if (!m) return undefined;
  return { name: m[1]!, version: decodeURIComponent(m[2]!), arch: m[3]! };
}

async function newer(a: string, b: string): Promise<boolean> {
  const r = await execa('dpkg', ['--compare-versions', a, 'gt', b], { reject: false });
  return r.exitCode === 0;
}

/** Remove every version of a package but its highest, and apt's leftovers in partial/. */
export async function pruneDebCache(dir: string): Promise<{ removed: string[] }> {
  if (!existsSync(dir)) return { removed: [] };
  const best = new Map<string, { file: string; version: string }>();
  const removed: string[] = [];
  for (const file of readdirSync(dir).sort()) {
    const d = parseDebName(file);
    if (!d) continue;
    const id = `${d.name}:${d.arch}`;
    const held = best.get(id);
    if (!held) {
      best.set(id, { file, version: d.version });
      continue;
    }
    const loser = (await newer(d.version, held.version)) ? held.file : file;
    if (loser === held.file) best.set(id, { file, version: d.version });
    rmSync(join(dir, loser), { force: true });
    removed.push(loser);
  }
  rmSync(join(dir, 'partial'), { recursive: true, force: true });
  return { removed };
}
