/**
 * The bmap modules (src/bmap/) without root: mapping a sparse file, the XML round trip, and
 * parseBmap's refusals (a tampered file, a bad range, an unsupported version). bmaptool's
 * acceptance of our files is in test/integration/flash.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { createBmap } from '../../src/bmap/create.js';
import { extentsToBlocks } from '../../src/bmap/extents.js';
import { bmapPathFor } from '../../src/bmap/format.js';
import { parseBmap } from '../../src/bmap/parse.js';

function sparse(): { dir: string; path: string; data: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-bmap-'));
  const path = join(dir, 'x.img');
  const fd = openSync(path, 'w');
  const data = randomBytes(3 * 4096);
  writeSync(fd, data, 0, data.length, 10 * 4096);
  writeSync(fd, Buffer.from('tail'), 0, 4, 64 * 1024 * 1024 + 1); // the last block is partial, and a hole lies before it
  closeSync(fd);
  return { dir, path, data };
}

test('createBmap maps only the data, per-range sha256, partial last block, valid file checksum', async () => {
  const { dir, path, data } = sparse();
  try {
    const b = await createBmap(path);
    assert.equal(b.imageSize, 64 * 1024 * 1024 + 5);
    assert.equal(b.blocksCount, 16385);
    assert.deepEqual(b.ranges.map((r) => [r.first, r.last]), [[10, 12], [16384, 16384]]);
    assert.equal(b.ranges[0]!.sha256, createHash('sha256').update(data).digest('hex'));
    assert.equal(b.mappedBlocks, 4);
    assert.deepEqual(parseBmap(b.xml).ranges, b.ranges);
    // the whole image's SHA-256 comes from the same pass, holes hashed as the zeros they read as
    assert.equal(b.imageSha256, createHash('sha256').update(readFileSync(path)).digest('hex'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('parseBmap refuses a tampered, inconsistent or unsupported bmap with a clear message', async () => {
  const { dir, path } = sparse();
  try {
    const { xml } = await createBmap(path);
    assert.throws(() => parseBmap(xml.replace('> 10-12 <', '> 10-13 <'), 'x.bmap'), /x\.bmap: the bmap file is corrupt/);
    assert.throws(() => parseBmap(xml.replace('version="2.0"', 'version="3.0"')), /format 3\.0 is not supported/);
    assert.throws(() => parseBmap('<html/>'), /not a bmap file/);
    assert.throws(() => parseBmap(xml.replace(/<ImageSize> \d+ </, '<ImageSize> 5 <')), /BlocksCount .* does not match/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('extents round out to whole blocks and merge when they touch; bmap path beside the image', () => {
  assert.deepEqual(extentsToBlocks([{ start: 100, end: 5000 }, { start: 8192, end: 8193 }, { start: 20000, end: 20480 }], 4096), [[0, 2], [4, 4]]);
  assert.equal(bmapPathFor('/o/appliance.img.xz'), '/o/appliance.bmap');
  assert.equal(bmapPathFor('/o/appliance.img'), '/o/appliance.bmap');
});
