/**
 * The FAT boot partition is never mounted: build machines (containers, small VM kernels) often
 * lack vfat, and mtools needs none. Its files are staged into the root's boot mount point
 * (/boot/firmware, empty in the image) for the chroot work — so kernel hooks and the Plan see
 * them where a Pi has them — and written back only if something changed.
 */
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { MTOOLS_ENV, tool } from '../util/tool.js';
import { BOOT_LABEL } from './layout.js';

type Snapshot = Map<string, string>;

async function snapshot(dir: string): Promise<Snapshot> {
  const out: Snapshot = new Map();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        out.set(relative(dir, p) + '/', 'dir');
        await walk(p);
      } else {
        const st = await stat(p);
        out.set(relative(dir, p), `${st.size}:${Math.floor(st.mtimeMs)}:${st.mode}`);
      }
    }
  };
  await walk(dir);
  return out;
}

function same(a: Snapshot, b: Snapshot): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

export interface StagedBoot {
  dir: string;
  /** Write the staged tree back to the partition if it changed; always empties the staging dir. */
  writeBack(): Promise<boolean>;
}

/** Copy the FAT partition `dev` into `dir` (which must be empty). */
export async function stageBoot(dev: string, dir: string): Promise<StagedBoot> {
  await mkdir(dir, { recursive: true });
  const listing = await tool('mdir', ['-i', dev, '-b', '::/'], { env: MTOOLS_ENV }).catch(() => '');
  if (listing.trim()) await tool('mcopy', ['-s', '-p', '-m', '-n', '-i', dev, '::/*', dir + '/'], { env: MTOOLS_ENV });
  const before = await snapshot(dir);
  return {
    dir,
    async writeBack() {
      const after = await snapshot(dir);
      const changed = !same(before, after);
      if (changed) await writeBoot(dev, dir);
      for (const e of await readdir(dir)) await rm(join(dir, e), { recursive: true, force: true });
      return changed;
    },
  };
}

/**
 * Re-create the FAT32 on `dev` from `dir`, keeping its label and volume id. The partition is
 * discarded first so freed clusters become holes in the image, not stale data in the .bmap.
 */
export async function writeBoot(dev: string, dir: string): Promise<void> {
  const label = (await tool('blkid', ['-o', 'value', '-s', 'LABEL', dev]).catch(() => '')).trim() || BOOT_LABEL;
  const uuid = (await tool('blkid', ['-o', 'value', '-s', 'UUID', dev]).catch(() => '')).trim();
  await tool('blkdiscard', ['-f', dev]).catch(() => undefined);
  await tool('mkfs.vfat', ['-F', '32', '-n', label, ...(/^[0-9A-F]{4}-[0-9A-F]{4}$/i.test(uuid) ? ['-i', uuid.replace('-', '')] : []), dev]);
  const entries = await readdir(dir);
  if (entries.length) await tool('mcopy', ['-s', '-p', '-m', '-i', dev, ...entries.map((e) => join(dir, e)), '::/'], { env: MTOOLS_ENV });
}
