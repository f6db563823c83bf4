/**
 * Writing the mapped ranges of an image to a device, so that an interrupted write can never
 * pass for a finished one: the first block (partition table) is zeroed and synced before
 * anything else, the image's own first block is held back and written only after everything
 * else is on the medium (and, when verifying, read back and found right). A card from a killed
 * write therefore has no partition table at all.
 *
 * Throughput: 4 MiB transfers at aligned offsets, several in flight. On a block device each
 * chunk is written with O_DIRECT and, when verifying, read straight back from the medium by the
 * same job, so verification overlaps writing instead of being a second pass; the SHA-256 of each
 * range is taken from what the medium returned and compared with the bmap's. The image itself is
 * hashed only when nothing else says what a range must hold (no bmap checksums) or when not
 * verifying (then it checks the image against its bmap as it goes).
 */
import { createHash, type Hash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, open, stat, type FileHandle } from 'node:fs/promises';
import { Failure, UserError } from '../util/errors.js';
import { DIRECT_UNIT, openDirect, roundUp, type DirectIo } from './direct.js';
import type { ImageSource, WritePlan } from './source.js';

export const CHUNK = 4 << 20;
/** Held back until the end: covers the MBR and the primary GPT header. */
export const HEAD = 4096;
/** Chunks in flight at once (written, or written and being read back). */
const DEPTH = 4;

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
  if (opts.toFile && (await lstat(path).catch(() => undefined))?.isSymbolicLink()) {
    throw new UserError(`${path} is a symbolic link: --to-file writes only to the file named, never through a link`);
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
  // O_NOFOLLOW: a link planted after the check above is refused by the kernel, not followed
  const fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
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

export interface WriteOptions {
  /** Read every chunk back from the medium right after writing it (block devices with O_DIRECT). */
  verify: boolean;
  /** Called before the read-back of the chunk holding this byte offset (a test alters the medium there). */
  gate?: { offset: number; wait: () => Promise<void> };
}

export interface WriteResult {
  /** SHA-256 of each range: as read back from the medium when `verified`, else as read from the image. */
  digests: string[];
  bytes: number;
  /** Every range was read back from the medium and matched (the caller need not verify again). */
  verified: boolean;
  /** The first range whose read-back differs from what it must hold. */
  mismatch?: { range: number; expected: string; actual: string };
}

/** Incremental SHA-256 per range over chunks fed in order. */
class RangeHasher {
  readonly digests: string[] = [];
  private hash: Hash | undefined;
  private range = -1;
  constructor(private readonly onRange: (range: number, digest: string) => void) {}
  update(range: number, data: Buffer): void {
    if (range !== this.range) {
      this.finish();
      this.hash = createHash('sha256');
      this.range = range;
    }
    this.hash!.update(data);
  }
  finish(): void {
    if (!this.hash) return;
    const d = this.hash.digest('hex');
    this.digests[this.range] = d;
    this.hash = undefined;
    this.onRange(this.range, d);
  }
}

/**
 * Write every mapped range of `source` to `target`. Throws a Failure naming the range when the
 * image does not match its bmap (a corrupt download), before the partition table is written.
 * A read-back that differs is returned as `mismatch`, also before the partition table is written.
 */
export async function writeImage(
  source: ImageSource,
  plan: WritePlan,
  target: Target,
  opts: WriteOptions,
  progress: (done: number) => void,
): Promise<WriteResult> {
  const { fh } = target;
  await writeAll(fh, Buffer.alloc(HEAD), HEAD, 0);
  await fh.sync();

  const direct: DirectIo | undefined = target.blockDevice ? await openDirect(target.path, 'rw') : undefined;
  try {
    return await pipeline(source, plan, target, direct, opts, progress);
  } finally {
    await direct?.close();
  }
}

async function pipeline(
  source: ImageSource,
  plan: WritePlan,
  target: Target,
  direct: DirectIo | undefined,
  opts: WriteOptions,
  progress: (done: number) => void,
): Promise<WriteResult> {
  // direct transfers need every chunk offset on a transfer-unit boundary
  if (direct && plan.blockSize % DIRECT_UNIT !== 0) direct = undefined;
  const readBack = opts.verify && !!direct;
  const known = plan.ranges.map((r) => r.sha256);
  const hashImage = !readBack || known.some((d) => !d);
  const chunks = chunksOf(plan);
  const head = Buffer.alloc(HEAD);
  const alloc = (n: number): Buffer => (direct ? direct.buffer(n) : Buffer.allocUnsafe(n));
  const free: Buffer[] = Array.from({ length: DEPTH + 1 }, () => alloc(CHUNK));

  const imageHash = new RangeHasher((range, got) => {
    const want = known[range];
    if (want && want !== got) {
      const r = plan.ranges[range]!;
      throw new Failure(
        `${source.path} does not match its bmap: blocks ${r.first}-${r.last} (offset ${r.first * plan.blockSize}) have sha256 ${got}, the bmap says ${want}; the image is corrupt or the bmap belongs to another image`,
      );
    }
  });
  let mismatch: WriteResult['mismatch'];
  const expectedOf = (range: number): string | undefined => known[range] ?? imageHash.digests[range];
  const mediumHash = new RangeHasher((range, got) => {
    const want = expectedOf(range);
    if (want && want !== got && !mismatch) mismatch = { range, expected: want, actual: got };
  });

  const writeChunk = async (buf: Buffer, offset: number, length: number): Promise<void> => {
    if (!direct) return writeAll(target.fh, buf, length, offset);
    // the image's last block may end mid-sector: pad with zeros to a whole transfer unit
    const padded = roundUp(length);
    buf.fill(0, length, padded);
    return writeAll(direct.fh, buf, padded, offset);
  };
  const readChunk = async (buf: Buffer, offset: number, length: number): Promise<void> => {
    const padded = roundUp(length);
    let got = 0;
    while (got < padded) {
      const { bytesRead } = await direct!.fh.read(buf, got, padded - got, offset + got);
      if (bytesRead === 0) throw new Failure(`${target.path} ends at ${offset + got} bytes: it cannot hold the image`);
      got += bytesRead;
    }
  };

  interface Job { index: number; buf: Buffer; done: Promise<void> }
  const fifo: Job[] = [];
  let done = 0;
  const settle = async (): Promise<void> => {
    const job = fifo.shift()!;
    await job.done;
    const c = chunks[job.index]!;
    if (readBack) {
      // the held-back head is not on the medium yet: its bytes are still the image's in the buffer
      mediumHash.update(c.range, job.buf.subarray(0, c.length));
    }
    free.push(job.buf);
    done += c.length;
    progress(done);
  };
  const readSource = async (i: number): Promise<Buffer> => {
    const buf = free.pop()!;
    const c = chunks[i]!;
    await source.read(buf, c.offset, c.length);
    return buf;
  };

  let next: Promise<Buffer> | undefined = chunks.length ? readSource(0) : undefined;
  try {
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i]!;
      const buf = await next!;
      next = undefined;
      let skip = 0;
      if (c.offset < HEAD) {
        skip = Math.min(HEAD - c.offset, c.length);
        buf.copy(head, c.offset, 0, skip);
      }
      if (hashImage) imageHash.update(c.range, buf.subarray(0, c.length));
      const job: Job = {
        index: i,
        buf,
        done: (async () => {
          if (skip < c.length) await writeChunk(buf.subarray(skip), c.offset + skip, c.length - skip);
          if (!readBack || skip >= c.length) return;
          if (opts.gate && opts.gate.offset >= c.offset && opts.gate.offset < c.offset + c.length) await opts.gate.wait();
          await readChunk(buf.subarray(skip), c.offset + skip, c.length - skip);
        })(),
      };
      job.done.catch(() => undefined);
      fifo.push(job);
      if (i + 1 < chunks.length) {
        next = readSource(i + 1);
        // handled here too: a failed read must not count as unhandled while we wait on the device
        next.catch(() => undefined);
      }
      while (fifo.length >= DEPTH) await settle();
    }
    while (fifo.length) await settle();
  } catch (e) {
    // let every transfer in flight end before the caller closes the device under it
    await Promise.allSettled([next, ...fifo.map((j) => j.done)]);
    throw e;
  }
  if (hashImage) imageHash.finish();
  if (readBack) mediumHash.finish();
  // ranges whose expected digest only became known when the image hash finished
  if (readBack && !mismatch) {
    for (let r = 0; r < plan.ranges.length; r++) {
      const want = expectedOf(r);
      if (want && mediumHash.digests[r] !== want) {
        mismatch = { range: r, expected: want, actual: mediumHash.digests[r] ?? '' };
        break;
      }
    }
  }
  await (direct ?? target).fh.sync();
  if (mismatch) return { digests: mediumHash.digests, bytes: done, verified: false, mismatch };

  await commitHead(target, direct, head, readBack);
  return { digests: readBack ? mediumHash.digests : imageHash.digests, bytes: done, verified: readBack };
}

/** Write the held-back head last; when verifying, read it back from the medium too. */
async function commitHead(target: Target, direct: DirectIo | undefined, head: Buffer, readBack: boolean): Promise<void> {
  if (!direct) {
    await writeAll(target.fh, head, HEAD, 0);
    await target.fh.sync();
    return;
  }
  const buf = direct.buffer(HEAD);
  head.copy(buf);
  await writeAll(direct.fh, buf, HEAD, 0);
  await direct.fh.sync();
  if (!readBack) return;
  buf.fill(0);
  const { bytesRead } = await direct.fh.read(buf, 0, HEAD, 0);
  if (bytesRead !== HEAD || !buf.equals(head)) {
    let k = 0;
    while (k < HEAD && buf[k] === head[k]) k++;
    throw new Failure(`verification failed: ${target.path} differs from the image at byte offset ${k} (0x${k.toString(16)}), in the partition table just written; the card is faulty — try another card`);
  }
}
