/**
 * O_DIRECT access to a block device: writes go to the medium without piling up in the page cache,
 * and a read right after a write comes from the medium, not from memory. That is what lets the
 * flash verify each chunk as soon as it is written instead of in a second pass.
 *
 * O_DIRECT wants buffers whose memory address is aligned, and Node has no way to ask for an
 * address or an aligned allocation. So we over-allocate and let the kernel tell us: an O_DIRECT
 * read into a misaligned buffer fails with EINVAL at once, so the first offset into the
 * allocation that reads successfully is aligned well enough for this device. A V8 backing store
 * of this size never moves, so the answer holds for the buffer's lifetime.
 */
import { constants, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** Offsets and lengths of every direct transfer are multiples of this (any sector size up to it). */
export const DIRECT_UNIT = 4096;

export interface DirectIo {
  readonly fh: FileHandle;
  /** A buffer of `size` bytes usable for transfers on this device. */
  buffer(size: number): Buffer;
  close(): Promise<void>;
}

/**
 * Open `path` for direct I/O next to the exclusive handle the caller holds. Undefined when the
 * device does not take direct transfers of DIRECT_UNIT (then the caller falls back to a page-cache
 * write and a separate read-back after dropping the device's buffers).
 */
export async function openDirect(path: string, mode: 'r' | 'rw'): Promise<DirectIo | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, (mode === 'rw' ? constants.O_RDWR : constants.O_RDONLY) | constants.O_DIRECT);
  } catch (e) {
    if ((e as { code?: string }).code === 'EINVAL') return undefined;
    throw e;
  }
  const alignedIn = (raw: Buffer, size: number): Buffer | undefined => {
    for (let off = 0; off + size <= raw.length; off += 16) {
      try {
        readSync(fh.fd, raw, off, DIRECT_UNIT, 0);
        return raw.subarray(off, off + size);
      } catch (e) {
        if ((e as { code?: string }).code !== 'EINVAL') throw e;
      }
    }
    return undefined;
  };
  const buffer = (size: number): Buffer => {
    const need = Math.max(size, DIRECT_UNIT);
    const buf = alignedIn(Buffer.allocUnsafeSlow(need + DIRECT_UNIT), need);
    if (!buf) throw new Error(`${path}: no aligned buffer accepted for direct I/O`);
    return buf.subarray(0, size);
  };
  try {
    buffer(DIRECT_UNIT);
  } catch {
    await fh.close();
    return undefined;
  }
  return { fh, buffer, close: () => fh.close() };
}

export function roundUp(n: number, unit = DIRECT_UNIT): number {
  return Math.ceil(n / unit) * unit;
}
