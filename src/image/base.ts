/**
 * Acquire a stock base image (Raspberry Pi OS Lite or anything shaped like it): a local path or
 * an http(s) URL; .img, .img.xz or .zip. The compressed file is verified against its SHA-256
 * and both it and the unpacked image are cached by that hash.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Readable, Transform } from 'node:stream';
import { join, resolve } from 'node:path';
import type { Reporter } from '../util/report.js';
import { Failure, UserError } from '../util/errors.js';
import { cacheDir } from './cache.js';
import { tool, toolToFile } from '../util/tool.js';

export interface AcquiredBase {
  img: string;
  sha256: string;
  source: string;
}

type Kind = 'img' | 'xz' | 'zip';

function kindOf(source: string): Kind {
  const s = source.toLowerCase().replace(/[?#].*$/, '');
  if (s.endsWith('.img.xz') || s.endsWith('.xz')) return 'xz';
  if (s.endsWith('.zip')) return 'zip';
  if (s.endsWith('.img')) return 'img';
  throw new UserError(`base image "${source}": unknown format; expected a file ending in .img, .img.xz or .zip`);
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

function hashingCounter(hash: ReturnType<typeof createHash>, onBytes: (n: number) => void): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      n += chunk.length;
      onBytes(n);
      cb(null, chunk);
    },
  });
}

export async function sha256File(path: string, progress?: (n: number) => void): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), hashingCounter(h, progress ?? (() => {})), async function* (src) {
    for await (const _ of src) void _;
  });
  return h.digest('hex');
}

/** Two builds acquiring the same base each fill their own file; the final rename is atomic. */
function privateTemp(dest: string, tag: string): string {
  return `${dest}.${tag}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

async function download(url: string, expected: string, dest: string, reporter: Reporter): Promise<void> {
  await reporter.step(`download ${url}`, async (progress) => {
    const res = await fetch(url).catch((e: unknown) => {
      throw new Failure(`download of ${url} failed: ${e instanceof Error ? e.message : String(e)}`);
    });
    if (!res.ok || !res.body) throw new Failure(`download of ${url} failed: HTTP ${res.status}`);
    const total = Number(res.headers.get('content-length') ?? '') || undefined;
    const h = createHash('sha256');
    const tmp = privateTemp(dest, 'part');
    try {
      await pipeline(
        Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>),
        hashingCounter(h, (n) => progress({ done: n, total, unit: 'bytes' })),
        createWriteStream(tmp),
      );
      const got = h.digest('hex');
      if (got !== expected) throw new Failure(`download of ${url} does not match its SHA-256`, [`expected ${expected}`, `actual   ${got}`]);
      await rename(tmp, dest);
    } finally {
      await rm(tmp, { force: true });
    }
  });
}

export async function acquireBase(source: string, sha256: string | undefined, reporter: Reporter): Promise<AcquiredBase> {
  const kind = kindOf(source);
  const expected = sha256?.toLowerCase();
  if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected)) {
    throw new UserError(`base.sha256 "${sha256}" is not a SHA-256 (64 hex digits)`);
  }
  let file: string;
  let digest: string;
  if (isUrl(source)) {
    if (!expected) throw new UserError(`base image ${source} is a URL: give its SHA-256 as base.sha256 so the download can be verified`);
    file = join(cacheDir('downloads'), `${expected}.${kind === 'img' ? 'img' : kind}`);
    if (!existsSync(file)) await download(source, expected, file, reporter);
    else reporter.info(`base image: using cached download ${file}`);
    digest = expected;
  } else {
    file = resolve(source);
    if (!existsSync(file) || !statSync(file).isFile()) throw new UserError(`base image ${source}: no such file`);
    const size = statSync(file).size;
    digest = await reporter.step(`verify ${source}`, (progress) => sha256File(file, (n) => progress({ done: n, total: size, unit: 'bytes' })));
    if (expected && digest !== expected) {
      throw new UserError(`base image ${source} does not match base.sha256 (expected ${expected}, actual ${digest})`);
    }
  }
  if (kind === 'img') return { img: file, sha256: digest, source };

  const img = join(cacheDir('bases'), `${digest}.img`);
  if (existsSync(img)) return { img, sha256: digest, source };
  const tmp = privateTemp(img, 'tmp');
  try {
    await reporter.step(`unpack ${kind === 'xz' ? '.xz' : '.zip'} base image`, async (progress) => {
      if (kind === 'xz') {
        const timer = setInterval(() => existsSync(tmp) && progress({ done: statSync(tmp).size, unit: 'bytes' }), 1000);
        try {
          await toolToFile('xz', ['-dc', '-T0', file], tmp);
        } finally {
          clearInterval(timer);
        }
      } else {
        const list = await tool('unzip', ['-Z1', file]);
        const entry = list.split('\n').find((l) => l.toLowerCase().endsWith('.img'));
        if (!entry) throw new UserError(`base image ${source}: the zip holds no .img file`);
        await toolToFile('unzip', ['-p', file, entry], tmp);
      }
    });
    await rename(tmp, img);
  } finally {
    await rm(tmp, { force: true });
  }
  return { img, sha256: digest, source };
}
