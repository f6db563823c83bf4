/**
 * Reading the written ranges back from the medium and comparing SHA-256 per range: the path for
 * --verify-only, a --to-file target and a device that refuses O_DIRECT. (A destination that can
 * do direct I/O is read back chunk by chunk as it is written: write.ts.)
 *
 * A device written through the page cache still has every block cached, so reading it back
 * would only compare memory with memory. Before reading we ask the kernel to write back and drop
 * the device's buffers (BLKFLSBUF via `blockdev --flushbufs`); the reads that follow come from
 * the medium.
 */
import { createHash } from 'node:crypto';
import { tool } from '../util/tool.js';
import { Failure } from '../util/errors.js';
import type { Destination } from './destination.js';
import { ChecksumVerificationError, imageMismatch, rangeSpan } from './mismatch.js';
import { openSource, type WritePlan } from './source.js';
import { CHUNK, chunksOf } from './write.js';

async function dropDeviceCache(dest: Destination): Promise<void> {
  if (!dest.can.dropCache) return;
  await dest.fh.sync();
  await tool('blockdev', ['--flushbufs', dest.path]);
}

async function readExact(dest: Destination, buf: Buffer, length: number, position: number): Promise<void> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await dest.fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) throw new Failure(`${dest.path} ends at ${position + got} bytes: it cannot hold the image`);
    got += bytesRead;
  }
}

/** A range whose digest on the medium is not the one it must have. */
export interface Mismatch {
  range: number;
  expected: string;
  actual: string;
}

/** Hash every range on the device; the first range whose digest differs, or undefined. */
export async function verifyRanges(
  dest: Destination,
  plan: WritePlan,
  expected: string[],
  progress: (done: number) => void,
): Promise<Mismatch | undefined> {
  await dropDeviceCache(dest);
  const chunks = chunksOf(plan);
  const bufs = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
  let hash = createHash('sha256');
  let done = 0;
  const readChunk = async (i: number): Promise<Buffer> => {
    const c = chunks[i]!;
    const buf = bufs[i % 2]!;
    await readExact(dest, buf, c.length, c.offset);
    return buf;
  };
  let next: Promise<Buffer> | undefined = chunks.length ? readChunk(0) : undefined;
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    const buf = await next!;
    next = i + 1 < chunks.length ? readChunk(i + 1) : undefined;
    hash.update(buf.subarray(0, c.length));
    done += c.length;
    progress(done);
    if (chunks[i + 1]?.range !== c.range) {
      const actual = hash.digest('hex');
      hash = createHash('sha256');
      if (actual !== expected[c.range]) {
        await next?.catch(() => undefined);
        return { range: c.range, expected: expected[c.range]!, actual };
      }
    }
  }
  return undefined;
}

/**
 * Find the first differing byte of a range that failed verification, by comparing with the image.
 * -1 when the device holds exactly the image's bytes: then the image, not the card, is at fault.
 */
async function firstBadOffset(dest: Destination, plan: WritePlan, imagePath: string, range: number): Promise<number> {
  const r = plan.ranges[range]!;
  const start = r.first * plan.blockSize;
  const end = Math.min((r.last + 1) * plan.blockSize, plan.imageSize);
  const source = await openSource(imagePath, plan.imageSize);
  const a = Buffer.allocUnsafe(CHUNK);
  const b = Buffer.allocUnsafe(CHUNK);
  try {
    for (let pos = start; pos < end; pos += CHUNK) {
      const n = Math.min(CHUNK, end - pos);
      await source.read(a, pos, n);
      await readExact(dest, b, n, pos);
      if (a.subarray(0, n).equals(b.subarray(0, n))) continue;
      for (let k = 0; k < n; k++) if (a[k] !== b[k]) return pos + k;
    }
  } finally {
    await source.close();
  }
  return -1;
}

/**
 * The error for a range that read back wrong, with the first byte that differs. When the medium
 * holds exactly the image's bytes, the image (or its bmap) is at fault, not the card.
 */
export async function mismatchError(
  dest: Destination,
  plan: WritePlan,
  imagePath: string,
  m: Mismatch,
  say: { medium: (offset: number) => string; imageSuffix?: string },
): Promise<ChecksumVerificationError> {
  await dropDeviceCache(dest);
  const offset = await firstBadOffset(dest, plan, imagePath, m.range);
  if (offset < 0) {
    const e = imageMismatch(imagePath, plan, m.range, m.expected, m.actual);
    return say.imageSuffix ? new ChecksumVerificationError(`${e.message}${say.imageSuffix}`, e) : e;
  }
  return new ChecksumVerificationError(say.medium(offset), { subject: 'medium', range: m.range, ...rangeSpan(plan, m.range), offset, expected: m.expected, actual: m.actual });
}
