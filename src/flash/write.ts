/**
 * Writing the mapped ranges of an image to a device, so that an interrupted write can never
 * pass for a finished one: the first block (partition table) is zeroed and synced before
 * anything else, the image's own first block is held back and written only after everything
 * else is on the medium. A card from a killed write therefore has no partition table at all.
 *
 * Throughput: 4 MiB writes at aligned offsets, the next chunk read while the current one is
 * written and hashed (the hash feeds verification and checks the image against its bmap).
 */
import { createHash, type Hash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { Failure, UserError } from '../util/errors.js';
import type { ImageSource, WritePlan } from './source.js';

export const CHUNK = 4 << 20;
/** Held back until the end: covers the MBR and the primary GPT header. */
export const HEAD = 4096;

export interface Target {
  path: string;
  fh: FileHandle;
  blockDevice: boolean;
}

export async function openTarget(path: string, opts: { toFile: boolean; size: number }): Promise<Target> {
  let st: Stats | undefined;
  try {
    st = await stat(path);
  } catch {
    st = undefined;
  }
  if (st?.isBlockDevice()) {
    try {
      // O_EXCL on a block device: fails with EBUSY while anything has it mounted or open exclusively
      const fh = await open(path, constants.O_RDWR | constants.O_EXCL);
      return { path, fh, blockDevice: true };
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EBUSY') throw new UserError(`${path} is in use (mounted or opened by another program): close it and try again`);
      if (code === 'EACCES' || code === 'EPERM') throw new UserError(`no permission to write ${path}: run as root (e.g. with sudo)`);
      if (code === 'EROFS') throw new UserError(`${path} is read-only`);
      throw new Failure(`cannot open ${path}: ${(e as Error).message}`);
    }
  }
  if (!opts.toFile) throw new UserError(`${path} is not a block device: pass --to-file to write the image into a regular file`);
  if (st && !st.isFile()) throw new UserError(`${path} is neither a block device nor a regular file`);
  const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  // a regular-file target becomes a sparse copy of the image; holes read back as zeros
  await fh.truncate(opts.size);
  return { path, fh, blockDevice: false };
}

async function writeAll(fh: FileHandle, buf: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await fh.write(buf, done, length - done, position + done);
    if (bytesWritten === 0) throw new Failure(`write to the device stopped at offset ${position + done}`);
    done += bytesWritten;
  }
}

export interface Chunk {
  range: number;
  offset: number;
  length: number;
}

/** Split the plan's ranges into chunks of at most CHUNK bytes that never cross a CHUNK boundary. */
export function chunksOf(plan: WritePlan): Chunk[] {
  const out: Chunk[] = [];
  plan.ranges.forEach((r, i) => {
    const end = Math.min((r.last + 1) * plan.blockSize, plan.imageSize);
    let pos = r.first * plan.blockSize;
    while (pos < end) {
      const next = Math.min(end, (Math.floor(pos / CHUNK) + 1) * CHUNK);
      out.push({ range: i, offset: pos, length: next - pos });
      pos = next;
    }
  });
  return out;
}

export interface WriteResult {
  /** SHA-256 of each range as read from the image. */
  digests: string[];
  bytes: number;
}

/**
 * Write every mapped range of `source` to `target`. Throws a Failure naming the range when the
 * image does not match its bmap (a corrupt download), before the partition table is written.
 */
export async function writeImage(
  source: ImageSource,
  plan: WritePlan,
  target: Target,
  progress: (done: number) => void,
): Promise<WriteResult> {
  const { fh } = target;
  await writeAll(fh, Buffer.alloc(HEAD), HEAD, 0);
  await fh.sync();

  const chunks = chunksOf(plan);
  const bufs = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
  const head = Buffer.alloc(HEAD);
  const digests: string[] = [];
  let hash: Hash | undefined;
  let hashRange = -1;
  let done = 0;

  const finishRange = (): void => {
    if (!hash) return;
    const got = hash.digest('hex');
    const want = plan.ranges[hashRange]!.sha256;
    if (want && want !== got) {
      const r = plan.ranges[hashRange]!;
      throw new Failure(
        `${source.path} does not match its bmap: blocks ${r.first}-${r.last} (offset ${r.first * plan.blockSize}) have sha256 ${got}, the bmap says ${want}; the image is corrupt or the bmap belongs to another image`,
      );
    }
    digests[hashRange] = got;
    hash = undefined;
  };

  const readInto = async (i: number): Promise<Buffer> => {
    const c = chunks[i]!;
    const buf = bufs[i % 2]!;
    await source.read(buf, c.offset, c.length);
    return buf;
  };

  let next: Promise<Buffer> | undefined = chunks.length ? readInto(0) : undefined;
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    const buf = await next!;
    next = i + 1 < chunks.length ? readInto(i + 1) : undefined;
    // the held-back head is copied out before the buffer can be reused
    let skip = 0;
    if (c.offset < HEAD) {
      skip = Math.min(HEAD - c.offset, c.length);
      buf.copy(head, c.offset, 0, skip);
    }
    if (c.range !== hashRange) {
      try {
        finishRange();
      } catch (e) {
        next?.catch(() => undefined);
        throw e;
      }
      hash = createHash('sha256');
      hashRange = c.range;
    }
    const writing = skip < c.length ? writeAll(fh, buf.subarray(skip), c.length - skip, c.offset + skip) : Promise.resolve();
    // hashing on this thread overlaps the write running in the I/O pool
    hash!.update(buf.subarray(0, c.length));
    try {
      await writing;
    } catch (e) {
      next?.catch(() => undefined);
      throw e;
    }
    done += c.length;
    progress(done);
  }
  finishRange();
  await fh.sync();
  await writeAll(fh, head, HEAD, 0);
  await fh.sync();
  return { digests, bytes: done };
}
