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
import { chmodSync, chownSync, copyFileSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Plan } from '../plan/types.js';
import { cacheDir } from './cache.js';
import { installedPackages } from './finish.js';

const LOCALE_GEN = '/etc/locale.gen';
const ARCHIVE = 'usr/lib/locale/locale-archive';
/** The packages whose files localedef reads: the compiler itself and the locale sources. */
const INPUTS = ['libc-bin', 'libc6', 'locales', 'locales-all'];

async function keyFor(root: string, plan: Plan): Promise<string | undefined> {
  const file = plan.files.find((f) => f.path === LOCALE_GEN);
  if (!file || file.owner !== 'root' || file.group !== 'root') return undefined;
  const versions = (await installedPackages(root)).filter((p) => INPUTS.includes(p.name)).map((p) => `${p.name}=${p.version}`);
  if (!versions.some((v) => v.startsWith('locales'))) return undefined;
  return createHash('sha256').update(`${plan.base.arch}\0${versions.join('\0')}\0${file.content}`).digest('hex').slice(0, 32);
}

/** Seed the root with a cached archive for the Plan's locale.gen; true when one was there. */
export async function seedLocales(root: string, plan: Plan): Promise<boolean> {
  const key = await keyFor(root, plan);
  const cached = key && join(cacheDir('locales'), `${key}.archive`);
  if (!cached || !existsSync(cached)) return false;
  const file = plan.files.find((f) => f.path === LOCALE_GEN)!;
  copyFileSync(cached, join(root, ARCHIVE));
  chmodSync(join(root, ARCHIVE), 0o644);
  const gen = join(root, LOCALE_GEN);
  writeFileSync(`${gen}.syncpi-seed`, file.content, { mode: Number.parseInt(file.mode, 8) });
  chownSync(`${gen}.syncpi-seed`, 0, 0);
  renameSync(`${gen}.syncpi-seed`, gen);
  return true;
}

/** After an apply that compiled the Plan's locales, keep the archive for the next build. */
export async function keepLocales(root: string, plan: Plan): Promise<void> {
  const key = await keyFor(root, plan);
  const archive = join(root, ARCHIVE);
  if (!key || !existsSync(archive) || readFileSync(join(root, LOCALE_GEN), 'utf8') !== plan.files.find((f) => f.path === LOCALE_GEN)!.content) return;
  const dest = join(cacheDir('locales'), `${key}.archive`);
  const tmp = `${dest}.partial-${process.pid}`;
  copyFileSync(archive, tmp);
  if (statSync(tmp).size === 0) return;
  renameSync(tmp, dest);
}
