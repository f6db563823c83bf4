/**
 * Make a built root fit to be flashed to many Pis: nothing identifying one machine (machine-id,
 * SSH host keys), nothing only the build needed (apt caches and lists, logs). The host keys are
 * made again at first boot by the Plan's one generator (src/plan/features/system.ts).
 */
import { readdir, rm, writeFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { tool } from '../util/tool.js';

async function emptyDir(dir: string, keep: (name: string) => boolean = () => false): Promise<void> {
  for (const e of await readdir(dir).catch(() => [] as string[])) {
    if (!keep(e)) await rm(join(dir, e), { recursive: true, force: true });
  }
}

/** Truncate every regular file under /var/log (keeping the tree, which some services expect). */
async function truncateLogs(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === 'journal') await emptyDir(p);
      else await truncateLogs(p);
    } else if (e.isFile()) {
      if (/\.(gz|xz|\d+)$/.test(e.name)) await rm(p, { force: true });
      else await truncate(p, 0);
    }
  }
}

/** apt's package cache and lists: the Pi fetches its own; in a layer or image they are only bulk. */
export async function dropAptState(root: string): Promise<void> {
  await emptyDir(join(root, 'var/cache/apt'), (n) => n === 'archives');
  await emptyDir(join(root, 'var/cache/apt/archives'), (n) => n === 'partial' || n === 'lock');
  await emptyDir(join(root, 'var/lib/apt/lists'), (n) => n === 'partial' || n === 'lock');
}

export async function finishRoot(root: string): Promise<void> {
  await dropAptState(root);
  await truncateLogs(join(root, 'var/log'));
  await emptyDir(join(root, 'tmp'));
  await emptyDir(join(root, 'var/tmp'));
  // an empty machine-id makes systemd generate a new one at boot, but to trixie's systemd it is
  // no first boot (ConditionFirstBoot=yes units are skipped): first-boot work must key on what
  // is missing instead, as the host key generator does
  await writeFile(join(root, 'etc/machine-id'), '');
  await rm(join(root, 'var/lib/dbus/machine-id'), { force: true });
  for (const e of await readdir(join(root, 'etc/ssh')).catch(() => [] as string[])) {
    if (/^ssh_host_.*_key(\.pub)?$/.test(e)) await rm(join(root, 'etc/ssh', e), { force: true });
  }
}

/** Installed packages with versions, read from the image's dpkg database by the host's dpkg-query. */
export async function installedPackages(root: string): Promise<Array<{ name: string; version: string }>> {
  const out = await tool('dpkg-query', [`--admindir=${join(root, 'var/lib/dpkg')}`, '-W', '-f', '${db:Status-Status}\t${Package}\t${Version}\n']);
  return out
    .split('\n')
    .map((l) => l.split('\t'))
    .filter((f) => f[0] === 'installed' && f[1])
    .map((f) => ({ name: f[1]!, version: f[2] ?? '' }))
    .sort((a, b) => a.name.localeCompare(b.name));
}
