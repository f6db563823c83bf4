/**
 * The bytes of an image, read in increasing offset order: a plain .img read with pread, or an
 * .img.xz decompressed as a stream by `xz -dc` (never unpacked to disk). Readers only ever move
 * forward, which is what lets a compressed image be flashed without seeking.
 */
import { constants, existsSync } from 'node:fs';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { run } from '../util/run.js';
import { dataExtents, extentsToBlocks } from '../bmap/extents.js';
import { bmapPathFor, BMAP_BLOCK_SIZE, type Bmap } from '../bmap/format.js';
import { parseBmap } from '../bmap/parse.js';
import { Failure, UserError } from '../util/errors.js';
import { DIRECT_UNIT, roundUp } from './direct.js';

export interface ImageSource {
  readonly path: string;
  readonly compressed: boolean;
  /** Size of the (decompressed) image. */
  readonly size: number;
  /** Read exactly `length` bytes at `offset` into `buf`; offsets must not go backwards. */
  read(buf: Buffer, offset: number, length: number): Promise<void>;
  close(): Promise<void>;
}

/** What to write: block ranges, with the checksum each must have (when known in advance). */
export interface WritePlan {
  blockSize: number;
  imageSize: number;
  ranges: Array<{ first: number; last: number; sha256?: string }>;
  /** Where the map came from, for the user. */
  mapSource: 'bmap' | 'sparse' | 'whole';
  bmapPath?: string;
  mappedBytes: number;
}

/**
 * With `direct`, whole-unit reads into aligned buffers bypass the page cache: the image is read
 * once, so caching it would only evict the rest of the machine's cache (and cost a copy). Any
 * read that cannot be direct (odd offset, a buffer O_DIRECT refuses, a file system without it)
 * goes through the ordinary handle.
 */
class FileSource implements ImageSource {
  readonly compressed = false;
  constructor(
    readonly path: string,
    readonly size: number,
    private readonly fh: FileHandle,
    private direct: FileHandle | undefined,
  ) {}
  async read(buf: Buffer, offset: number, length: number): Promise<void> {
    if (this.direct && offset % DIRECT_UNIT === 0) {
      // a whole number of units, which at the end of the file simply comes back short
      const want = Math.min(roundUp(length), buf.length - (buf.length % DIRECT_UNIT));
      if (want >= length) {
        try {
          let got = 0;
          while (got < length) {
            const { bytesRead } = await this.direct.read(buf, got, want - got, offset + got);
            if (bytesRead === 0) break;
            got += bytesRead;
          }
          if (got >= length) return;
        } catch (e) {
          if ((e as { code?: string }).code !== 'EINVAL') throw e;
          await this.dropDirect();
        }
      }
    }
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) throw new Failure(`${this.path} ended at ${offset + got} bytes, before the ${offset + length} its map needs`);
      got += bytesRead;
    }
  }
  private async dropDirect(): Promise<void> {
    const d = this.direct;
    this.direct = undefined;
    await d?.close();
  }
  async close(): Promise<void> {
    await this.dropDirect();
    await this.fh.close();
  }
}

/**
 * The decompressor is a plain child process whose stdout only this class reads: a wrapper that
 * also listens to the pipe (execa does, even with buffer: false) can take the first chunk — the
 * partition table — before the iterator sees it, and the image would then start with zeros.
 */
class XzSource implements ImageSource {
  readonly compressed = true;
  private pos = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly iter: AsyncIterator<Buffer>;
  private stderr = '';
  private readonly exited: Promise<number | null>;
  constructor(readonly path: string, readonly size: number, private readonly child: ChildProcessByStdio<null, Readable, Readable>) {
    this.iter = child.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    child.stderr.on('data', (c: Buffer) => {
      if (this.stderr.length < 4096) this.stderr += c.toString();
    });
    this.exited = new Promise((resolve) => {
      child.on('error', (e) => {
        this.stderr ||= (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'xz not found: install xz-utils' : e.message;
        resolve(-1);
      });
      child.on('close', (code) => resolve(code));
    });
  }
  private async fill(need: number): Promise<void> {
    while (this.pendingBytes < need) {
      const r = await this.iter.next();
      if (r.done) {
        const code = await this.exited;
        if (code !== 0) throw new Failure(`xz could not decompress ${this.path}: ${this.stderr.trim().split('\n')[0] || `exit ${code}`}`);
        throw new Failure(`${this.path} decompresses to ${this.pos + this.pendingBytes} bytes, fewer than the ${this.pos + need} its map needs`);
      }
      this.pending.push(r.value);
      this.pendingBytes += r.value.length;
    }
  }
  /** Drop `n` bytes from the front of the pending data, copying them to `dst` when given. */
  private take(n: number, dst?: Buffer, dstOff = 0): void {
    let left = n;
    while (left > 0) {
      const head = this.pending[0]!;
      const k = Math.min(left, head.length);
      if (dst) head.copy(dst, dstOff + (n - left), 0, k);
      if (k === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(k);
      left -= k;
    }
    this.pendingBytes -= n;
    this.pos += n;
  }
  async read(buf: Buffer, offset: number, length: number): Promise<void> {
    if (offset < this.pos) throw new Error(`compressed image read went backwards (${offset} < ${this.pos})`);
    // skip the holes in bounded steps so a large gap never sits in memory at once
    while (this.pos < offset) {
      const step = Math.min(offset - this.pos, 8 << 20);
      await this.fill(step);
      this.take(step);
    }
    await this.fill(length);
    this.take(length, buf, 0);
  }
  async close(): Promise<void> {
    this.child.stdout.destroy();
    this.child.kill();
    await this.exited;
  }
}

/** Uncompressed size of an .xz file, from its index (no decompression). */
async function xzSize(path: string): Promise<number> {
  try {
    const out = (await run('xz', ['--robot', '--list', path])).stdout;
    const total = out.split('\n').find((l) => l.startsWith('totals\t'));
    const n = Number(total?.split('\t')[4]);
    if (!Number.isSafeInteger(n) || n <= 0) throw new Error('no size in xz --list output');
    return n;
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') throw new Failure('xz not found: install xz-utils to flash .img.xz images');
    throw new UserError(`${path} is not a valid .xz file: ${(e as { stderr?: string }).stderr?.trim().split('\n')[0] || (e as Error).message}`);
  }
}

export function isCompressed(path: string): boolean {
  return path.endsWith('.xz');
}

export async function imageSize(path: string): Promise<number> {
  return isCompressed(path) ? xzSize(path) : (await stat(path)).size;
}

/** `direct`: the caller reads into buffers aligned for O_DIRECT (see direct.ts). */
export async function openSource(path: string, size: number, opts: { direct?: boolean } = {}): Promise<ImageSource> {
  if (isCompressed(path)) {
    return new XzSource(path, size, spawn('xz', ['-dc', '-T0', path], { stdio: ['ignore', 'pipe', 'pipe'] }));
  }
  const fh = await open(path, 'r');
  const direct = opts.direct ? await open(path, constants.O_RDONLY | constants.O_DIRECT).catch(() => undefined) : undefined;
  return new FileSource(path, size, fh, direct);
}

/**
 * Decide what to write: the image's bmap when one lies beside it, else the data extents of the
 * sparse file, else (a compressed image without a bmap) everything.
 */
export async function planWrite(path: string, size: number): Promise<WritePlan> {
  const bmapPath = bmapPathFor(path);
  if (existsSync(bmapPath)) {
    const bmap: Bmap = parseBmap(await readFile(bmapPath, 'utf8'), bmapPath);
    if (bmap.imageSize !== size) {
      throw new UserError(`${bmapPath} describes an image of ${bmap.imageSize} bytes but ${path} is ${size} bytes: the bmap belongs to another image`);
    }
    return { blockSize: bmap.blockSize, imageSize: size, ranges: bmap.ranges, mapSource: 'bmap', bmapPath, mappedBytes: mappedBytes(bmap.ranges, bmap.blockSize, size) };
  }
  const blockSize = BMAP_BLOCK_SIZE;
  if (isCompressed(path)) {
    const ranges = [{ first: 0, last: Math.ceil(size / blockSize) - 1 }];
    return { blockSize, imageSize: size, ranges, mapSource: 'whole', mappedBytes: size };
  }
  const { extents, method } = await dataExtents(path);
  const ranges = extentsToBlocks(extents, blockSize).map(([first, last]) => ({ first, last }));
  return { blockSize, imageSize: size, ranges, mapSource: method === 'whole-file' ? 'whole' : 'sparse', mappedBytes: mappedBytes(ranges, blockSize, size) };
}

export function mappedBytes(ranges: Array<{ first: number; last: number }>, blockSize: number, size: number): number {
  return ranges.reduce((n, r) => n + Math.min((r.last + 1) * blockSize, size) - r.first * blockSize, 0);
}
