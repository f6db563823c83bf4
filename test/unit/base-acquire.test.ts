/**
 * Acquiring a stock base image: a local .img, .img.xz or .zip, or a URL (served here by a real
 * HTTP server on loopback). Checked against its SHA-256, cached by it, and never a partial file
 * in the cache after a bad download.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { acquireBase } from '../../src/image/base.js';
import type { Reporter } from '../../src/util/report.js';
import { Failure, UserError } from '../../src/util/errors.js';

const work = mkdtempSync(join(tmpdir(), 'syncpi-base-'));
const oldCache = process.env.XDG_CACHE_HOME;
/** Records what a user would be shown: step names and info lines. */
const seen: string[] = [];
const reporter: Reporter = {
  json: true,
  async step(name, fn) {
    seen.push(`step ${name}`);
    return fn(() => undefined);
  },
  info: (m) => void seen.push(`info ${m}`),
  warn: (m) => void seen.push(`warn ${m}`),
  result: () => undefined,
};
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// A small "image": random bytes stand in for partitions; only the bytes matter here.
const img = randomBytes(3 << 20);
const imgPath = join(work, 'raspios-lite.img');
let zipPath = '';
let xzPath = '';
let server: Server;
let base = '';
const hits = new Map<string, number>();

before(async () => {
  process.env.XDG_CACHE_HOME = join(work, 'cache');
  writeFileSync(imgPath, img);
  execFileSync('xz', ['-k', '-T0', '-1', imgPath]);
  xzPath = `${imgPath}.xz`;
  zipPath = join(work, 'raspios-lite.zip');
  execFileSync('sh', ['-c', 'mkdir -p "$1/z/docs" && cp "$2" "$1/z/2025-raspios-lite.img" && echo readme > "$1/z/docs/README.txt" && cd "$1/z" && zip -q -r "$3" docs 2025-raspios-lite.img', 'sh', work, imgPath, zipPath]);
  writeFileSync(join(work, 'no-image.zip'), Buffer.alloc(0));
  execFileSync('sh', ['-c', 'cd "$1/z" && rm -f ../no-image.zip && zip -q -r ../no-image.zip docs', 'sh', work]);
  server = createServer((req, res) => {
    hits.set(req.url!, (hits.get(req.url!) ?? 0) + 1);
    const files: Record<string, string> = { '/raspios-lite.zip': zipPath, '/raspios-lite.img.xz': xzPath };
    const f = files[req.url!.replace(/\?.*$/, '')];
    if (!f) {
      res.writeHead(404).end('not here');
      return;
    }
    const body = readFileSync(f);
    res.writeHead(200, { 'content-length': String(body.length) });
    if (!req.url!.includes('slow')) {
      res.end(body);
      return;
    }
    // In four parts, so that concurrent downloads overlap for certain.
    const part = Math.ceil(body.length / 4);
    let i = 0;
    const next = (): void => {
      if (i >= 4) return void res.end();
      res.write(body.subarray(i * part, ++i * part));
      setTimeout(next, 50);
    };
    next();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server?.close();
  if (oldCache === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = oldCache;
  rmSync(work, { recursive: true, force: true });
});

const cacheFiles = (kind: string): string[] => {
  try {
    return readdirSync(join(work, 'cache', 'syncpi', kind));
  } catch {
    return [];
  }
};

describe('local base images', () => {
  test('.img with the right SHA-256 is used in place; a wrong one is refused (exit class 2)', async () => {
    const got = await acquireBase(imgPath, sha(img), reporter);
    assert.equal(got.img, imgPath);
    assert.equal(got.sha256, sha(img));
    await assert.rejects(acquireBase(imgPath, 'a'.repeat(64), reporter), (e: unknown) => e instanceof UserError && /does not match base\.sha256/.test(e.message));
    await assert.rejects(acquireBase(imgPath, 'not-a-hash', reporter), (e: unknown) => e instanceof UserError && /64 hex digits/.test(e.message));
  });

  test('.img.xz and .zip unpack to the same bytes, cached by the compressed file\'s hash', async () => {
    const fromXz = await acquireBase(xzPath, sha(readFileSync(xzPath)), reporter);
    assert.ok(readFileSync(fromXz.img).equals(img));
    assert.equal(fromXz.img, join(work, 'cache', 'syncpi', 'bases', `${sha(readFileSync(xzPath))}.img`));
    const fromZip = await acquireBase(zipPath, undefined, reporter);
    assert.ok(readFileSync(fromZip.img).equals(img), 'the .img entry, not the README');
    assert.ok(!cacheFiles('bases').some((f) => f.includes('.tmp-')), 'no temporary left');
  });

  test('a zip without an .img, an unknown format and a missing file are clear errors', async () => {
    await assert.rejects(acquireBase(join(work, 'no-image.zip'), undefined, reporter), (e: unknown) => e instanceof UserError && /holds no \.img/.test(e.message));
    await assert.rejects(acquireBase(join(work, 'x.iso'), undefined, reporter), (e: unknown) => e instanceof UserError && /expected a file ending in \.img, \.img\.xz or \.zip/.test(e.message));
    await assert.rejects(acquireBase(join(work, '../nope/raspios.img'), undefined, reporter), (e: unknown) => e instanceof UserError && /no such file/.test(e.message));
    assert.ok(!cacheFiles('bases').some((f) => f.includes('.tmp-')));
  });
});

describe('base images from a URL', () => {
  test('a URL needs its SHA-256', async () => {
    await assert.rejects(acquireBase(`${base}/raspios-lite.zip`, undefined, reporter), (e: unknown) => e instanceof UserError && /give its SHA-256/.test(e.message));
  });

  test('download is verified, unpacked, and cached: the second build does not download again', async () => {
    const want = sha(readFileSync(zipPath));
    const first = await acquireBase(`${base}/raspios-lite.zip?mirror=1`, want, reporter);
    assert.ok(readFileSync(first.img).equals(img));
    const second = await acquireBase(`${base}/raspios-lite.zip?mirror=1`, want.toUpperCase(), reporter);
    assert.equal(second.img, first.img);
    assert.equal(hits.get('/raspios-lite.zip?mirror=1'), 1, 'downloaded once');
    assert.equal(seen.filter((l) => l.startsWith('step download')).length, 1);
    assert.ok(seen.some((l) => l.startsWith('info base image: using cached download')));
    assert.deepEqual(cacheFiles('downloads'), [`${want}.zip`]);
  });

  test('two builds fetching the same base at once both get it whole, and leave one cache entry', async () => {
    const want = sha(readFileSync(xzPath));
    const [a, b] = await Promise.all([
      acquireBase(`${base}/raspios-lite.img.xz?slow=1`, want, reporter),
      acquireBase(`${base}/raspios-lite.img.xz?slow=2`, want, reporter),
    ]);
    assert.equal(hits.get('/raspios-lite.img.xz?slow=1'), 1);
    assert.equal(hits.get('/raspios-lite.img.xz?slow=2'), 1, 'both downloaded: neither found the other\'s file half-written');
    assert.equal(a.img, b.img);
    assert.ok(readFileSync(a.img).equals(img));
    assert.ok(cacheFiles('downloads').includes(`${want}.xz`));
    assert.ok(!cacheFiles('downloads').some((f) => f.includes('.part')), 'no temporary left');
    assert.ok(!cacheFiles('bases').some((f) => f.includes('.tmp')), 'no temporary left');
  });

  test('a download with another SHA-256 or an HTTP error leaves nothing in the cache', async () => {
    const before = cacheFiles('downloads');
    await assert.rejects(acquireBase(`${base}/raspios-lite.img.xz`, 'b'.repeat(64), reporter), (e: unknown) => e instanceof Failure && /does not match its SHA-256/.test(e.message));
    await assert.rejects(acquireBase(`${base}/gone.img.xz`, 'c'.repeat(64), reporter), (e: unknown) => e instanceof Failure && /HTTP 404/.test(e.message));
    assert.deepEqual(cacheFiles('downloads'), before, 'no .part file, no entry for a bad download');
  });
});
