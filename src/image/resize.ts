/**
 * Growing the root before package work and shrinking it afterwards. Sizes are in 512-byte
 * sectors for the partition table and bytes for files; the ext4 is always checked before a
 * resize because resize2fs refuses otherwise.
 */
import { truncate, stat } from 'node:fs/promises';
import { execa } from 'execa';
import { tool } from '../util/tool.js';
import { Failure } from '../util/errors.js';
import { readDisk, resizePartition, SECTOR } from './layout.js';

const MiB = 1024 * 1024;

/** e2fsck exits 1 or 2 when it fixed something, which is fine here; 4 and up is not. */
async function fsck(args: string[]): Promise<void> {
  const r = await execa('e2fsck', args, { reject: false, stdin: 'ignore' });
  if (r.exitCode === undefined || r.exitCode > 2) throw new Failure(`e2fsck ${args.join(' ')} failed (exit ${r.exitCode})`, String(r.stderr || r.stdout).split('\n').slice(-10));
}

/** Make the image file `extraBytes` longer and extend the last (root) partition to its end. */
export async function growImageFile(img: string, extraBytes: number): Promise<void> {
  const disk = await readDisk(img);
  const last = disk.partitions.length;
  const size = (await stat(img)).size;
  const p = disk.partitions[last - 1]!;
  const end = (p.start + p.size) * SECTOR;
  const newSize = Math.ceil((Math.max(size, end) + extraBytes) / MiB) * MiB;
  await truncate(img, newSize);
  await resizePartition(img, last);
}

/** Grow the ext4 on `dev` to fill its partition. */
export async function growFs(dev: string): Promise<void> {
  await fsck(['-fy', dev]);
  await tool('resize2fs', [dev]);
}

/**
 * Shrink the ext4 on `dev` to its minimum plus headroom, then let the device discard every free
 * block: on a loop device that punches holes in the image file, so free space costs nothing in
 * the sparse image and reads back as zeros. Returns the new file-system size in bytes.
 */
export async function shrinkFs(dev: string, headroomBytes: number): Promise<number> {
  await fsck(['-fy', dev]);
  const info = await tool('dumpe2fs', ['-h', dev]);
  const blockSize = Number(/^Block size:\s+(\d+)/m.exec(info)?.[1] ?? 4096);
  const current = Number(/^Block count:\s+(\d+)/m.exec(info)?.[1] ?? 0);
  const minBlocks = Number(/(\d+)\s*$/.exec((await tool('resize2fs', ['-P', dev])).trim())?.[1] ?? 0);
  const target = Math.min(current, Math.ceil((minBlocks * blockSize + headroomBytes) / MiB) * (MiB / blockSize));
  if (target < current) await tool('resize2fs', [dev, String(target)]);
  await fsck(['-fy', '-E', 'discard', dev]);
  return target * blockSize;
}

/** Cut the root partition to `fsBytes` and the file right after it. */
export async function truncateToRoot(img: string, fsBytes: number): Promise<number> {
  const disk = await readDisk(img);
  const last = disk.partitions.length;
  const p = disk.partitions[last - 1]!;
  const sectors = Math.ceil(fsBytes / MiB) * (MiB / SECTOR);
  await resizePartition(img, last, sectors);
  const size = (p.start + sectors) * SECTOR;
  await truncate(img, size);
  return size;
}
