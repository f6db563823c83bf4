/**
 * Writing the mapped ranges of an image to a device, so that an interrupted write can never
 * pass for a finished one: the first block (partition table) is zeroed and synced before
 * anything else, the image's own first block is held back and written only after everything
 * else is on the medium (and, when verifying, read back and found right). A card from a killed
 * write therefore has no partition table at all.
 *
 * Throughput: 4 MiB transfers at aligned offsets, several in flight. Where the destination takes
 * direct I/O (probed once when it was opened: destination.ts) each chunk is written with O_DIRECT
 * and, when verifying, read straight back from the medium by the same job, so verification
 * overlaps writing instead of being a second pass; the SHA-256 of each range is taken from what
 * the medium returned and compared with the bmap's. The image itself is hashed only when nothing
 * else says what a range must hold (no bmap checksums) or when not verifying (then it checks the
 * image against its bmap as it goes).
 */
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Failure } from '../util/errors.js';
import type { Destination } from './destination.js';
import { DIRECT_UNIT, roundUp, type DirectIo } from './direct.js';
import { ChecksumVerificationError, imageMismatch, rangeSpan } from './mismatch.js';
import type { ImageSource, WritePlan } from './source.js';

export const CHUNK = 4 << 20;
/** Held back until the end: covers the MBR and the primary GPT header. */
export const HEAD = 4096;
/** Chunks in flight at once (written, or written and being read back). */
const DEPTH = 4;

/**
 * The destination's direct handle when this plan can use it: direct transfers need every chunk
 * offset on a transfer-unit boundary, which holds exactly when the plan's block size is a
 * multiple of the unit (chunks start at range starts and CHUNK boundaries).
 */
export function directFor(dest: Destination, plan: WritePlan): DirectIo | undefined {
  return dest.direct && plan.blockSize % DIRECT_UNIT === 0 ? dest.direct : undefined;
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
  /** Read every chunk back from the medium right after writing it (when the destination can do direct I/O). */
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
 * Write every mapped range of `source` to `dest`. Throws a ChecksumVerificationError naming the
 * range when the image does not match its bmap (a corrupt download), before the partition table
 * is written. A read-back that differs is returned as `mismatch`, also before the partition table
 * is written (the caller finds the first differing byte and raises the error).
 */
export async function writeImage(
  source: ImageSource,
  plan: WritePlan,
  dest: Destination,
  opts: WriteOptions,
  progress: (done: number) => void,
): Promise<WriteResult> {
  const { fh } = dest;
  await writeAll(fh, Buffer.alloc(HEAD), HEAD, 0);
  await fh.sync();

  const direct = directFor(dest, plan);
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
      throw imageMismatch(source.path, plan, range, want, got);
    }
  });
  let mismatch: WriteResult['mismatch'];
  const expectedOf = (range: number): string | undefined => known[range] ?? imageHash.digests[range];
  const mediumHash = new RangeHasher((range, got) => {
    const want = expectedOf(range);
    if (want && want !== got && !mismatch) mismatch = { range, expected: want, actual: got };
  });

  const writeChunk = async (buf: Buffer, offset: number, length: number): Promise<void> => {
    if (!direct) return writeAll(dest.fh, buf, length, offset);
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
      if (bytesRead === 0) throw new Failure(`${dest.path} ends at ${offset + got} bytes: it cannot hold the image`);
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
  await (direct ?? dest).fh.sync();
  if (mismatch) return { digests: mediumHash.digests, bytes: done, verified: false, mismatch };

  await commitHead(dest, plan, direct, head, readBack);
  return { digests: readBack ? mediumHash.digests : imageHash.digests, bytes: done, verified: readBack };
}

/** Write the held-back head last; when verifying, read it back from the medium too. */
async function commitHead(dest: Destination, plan: WritePlan, direct: DirectIo | undefined, head: Buffer, readBack: boolean): Promise<void> {
  if (!direct) {
    await writeAll(dest.fh, head, HEAD, 0);
    await dest.fh.sync();
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
    const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    // the digests cover the head alone: the range holding it is named for orientation
    const range = Math.max(0, plan.ranges.findIndex((r) => r.first * plan.blockSize < HEAD));
    const { firstBlock, lastBlock } = rangeSpan(plan, range);
    throw new ChecksumVerificationError(
      `verification failed: ${dest.path} differs from the image at byte offset ${k} (0x${k.toString(16)}), in the partition table just written; the card is faulty — try another card`,
      { subject: 'medium', range, firstBlock, lastBlock, offset: k, start: 0, end: HEAD, expected: digest(head), actual: digest(buf.subarray(0, HEAD)) },
    );
  }
}
