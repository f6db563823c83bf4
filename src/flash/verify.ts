/**
 * Reading the written ranges back from the medium and comparing SHA-256 per range: the path for
 * --verify-only, a --to-file target and a device that refuses O_DIRECT. (A block device written
 * with O_DIRECT is read back chunk by chunk as it is written: write.ts.)
 *
 * A device written through the page cache still has every block cached, so reading it back
 * would only compare memory with memory. Before reading we ask the kernel to write back and drop
 * the device's buffers (BLKFLSBUF via `blockdev --flushbufs`); the reads that follow come from
 * the medium.
 */
import { createHash } from 'node:crypto';
import { tool } from '../util/tool.js';
import { Failure } from '../util/errors.js';
import { openSource, type WritePlan } from './source.js';
import { CHUNK, chunksOf, type Target } from './write.js';

export async function dropDeviceCache(target: Target): Promise<void> {
  if (!target.blockDevice) return;
  await target.fh.sync();
  await tool('blockdev', ['--flushbufs', target.path]);
}

async function readExact(target: Target, buf: Buffer, length: number, position: number): Promise<void> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await target.fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) throw new Failure(`${target.path} ends at ${position + got} bytes: it cannot hold the image`);
    got += bytesRead;
  }
}

export interface Mismatch {
  range: number;
  /** Byte offset of the first byte that differs from the image. */
  offset: number;
  expected: string;
  actual: string;
}

/** Hash every range on the device; the first range whose digest differs, or undefined. */
export async function verifyRanges(
  target: Target,
  plan: WritePlan,
  expected: string[],
  progress: (done: number) => void,
): Promise<Mismatch | undefined> {
  await dropDeviceCache(target);
  const chunks = chunksOf(plan);
  const bufs = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
  let hash = createHash('sha256');
  let done = 0;
  const readChunk = async (i: number): Promise<Buffer> => {
    const c = chunks[i]!;
    const buf = bufs[i % 2]!;
    await readExact(target, buf, c.length, c.offset);
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
        return { range: c.range, offset: -1, expected: expected[c.range]!, actual };
      }
    }
  }
  return undefined;
}

/**
 * Find the first differing byte of a range that failed verification, by comparing with the image.
 * -1 when the device holds exactly the image's bytes: then the image, not the card, is at fault.
 */
export async function firstBadOffset(target: Target, plan: WritePlan, imagePath: string, range: number): Promise<number> {
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
      await readExact(target, b, n, pos);
      if (a.subarray(0, n).equals(b.subarray(0, n))) continue;
      for (let k = 0; k < n; k++) if (a[k] !== b[k]) return pos + k;
    }
  } finally {
    await source.close();
  }
  return -1;
}
