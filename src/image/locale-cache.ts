/**
 * Compiled locales, kept between image builds.
 *
 * The Plan's /etc/locale.gen notifies locale-gen, and in an image of another architecture
 * localedef runs emulated: one locale costs one to three minutes, more than the rest of a
 * config-only rebuild together. Its only output, /usr/lib/locale/locale-archive, depends on nothing
 * but the locale.gen it reads and the root's libc and locale data, so an archive made once is
 * kept under that key. The next build puts both the archive and the same locale.gen into the root
 * before the converger runs; the converger then finds the file as the Plan wants it and has
 * nothing to regenerate. Any other locale.gen, libc or locales version misses the cache and runs
 * locale-gen as always.
 */
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Plan, PlanFile } from '../plan/types.js';
import { ranHandlers, type ApplyReport } from '../bundle/protocol.js';
import { cacheDir } from './cache.js';
import { installedPackages } from './finish.js';

const LOCALE_GEN = '/etc/locale.gen';
const ARCHIVE = 'usr/lib/locale/locale-archive';
/** The packages whose files localedef reads: the compiler itself and the locale sources. */
const INPUTS = ['libc-bin', 'libc6', 'locales', 'locales-all'];

export interface LocaleCache {
  /** The root got the cached archive: locale-gen has nothing to do in this apply. */
  seeded: boolean;
  /** After the apply: keep the archive locale-gen made, for the next build. */
  keep(report: ApplyReport): Promise<void>;
}

function seed(root: string, file: PlanFile, cached: string): void {
  copyFileSync(cached, join(root, ARCHIVE));
  chmodSync(join(root, ARCHIVE), 0o644);
  const gen = join(root, LOCALE_GEN);
  writeFileSync(`${gen}.syncpi-seed`, file.content, { mode: Number.parseInt(file.mode, 8) });
  chownSync(`${gen}.syncpi-seed`, 0, 0);
  renameSync(`${gen}.syncpi-seed`, gen);
}

/**
 * The cache entry for the Plan's locale.gen in this root, seeded into the root when it exists;
 * undefined when the Plan has no root-owned locale.gen or the root has no locales package.
 */
export async function openLocaleCache(root: string, plan: Plan): Promise<LocaleCache | undefined> {
  const file = plan.files.find((f) => f.path === LOCALE_GEN);
  if (!file || file.owner !== 'root' || file.group !== 'root') return undefined;
  const versions = (await installedPackages(root)).filter((p) => INPUTS.includes(p.name)).map((p) => `${p.name}=${p.version}`);
  if (!versions.some((v) => v.startsWith('locales'))) return undefined;
  const key = createHash('sha256').update(`${plan.base.arch}\0${versions.join('\0')}\0${file.content}`).digest('hex').slice(0, 32);
  const cached = join(cacheDir('locales'), `${key}.archive`);
  const seeded = existsSync(cached);
  if (seeded) seed(root, file, cached);
  return {
    seeded,
    async keep(report) {
      if (seeded || !ranHandlers(report).some((h) => file.notify.includes(h.name))) return;
      const archive = join(root, ARCHIVE);
      if (!existsSync(archive) || readFileSync(join(root, LOCALE_GEN), 'utf8') !== file.content) return;
      const tmp = `${cached}.partial-${process.pid}`;
      copyFileSync(archive, tmp);
      if (statSync(tmp).size === 0) rmSync(tmp, { force: true });
      else renameSync(tmp, cached);
    },
  };
}
