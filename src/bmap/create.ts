/**
 * Writing a bmap: map the data of a sparse image (extents.ts), checksum each range and render
 * the XML with its file checksum, as `bmaptool create` does; and the image's own SHA-256.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { UserError } from '../util/errors.js';
import { formatBytes } from '../util/report.js';
import { dataExtents, extentsToBlocks } from './extents.js';
import { BMAP_BLOCK_SIZE, type Bmap, type BmapRange } from './format.js';

async function hashRange(fh: FileHandle, start: number, end: number, buf: Buffer, whole: Hash): Promise<string> {
  const h = createHash('sha256');
  let pos = start;
  while (pos < end) {
    const n = Math.min(buf.length, end - pos);
    const { bytesRead } = await fh.read(buf, 0, n, pos);
    if (bytesRead === 0) break;
    h.update(buf.subarray(0, bytesRead));
    whole.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return h.digest('hex');
}

/** Sizes in the XML's comments, as bmaptool words them: "N bytes" below a KiB. */
function humanSize(n: number): string {
  return n < 1024 ? `${n} bytes` : formatBytes(n);
}

export function renderBmap(imageSize: number, ranges: BmapRange[], blockSize = BMAP_BLOCK_SIZE): string {
  const blocksCount = Math.ceil(imageSize / blockSize);
  const mapped = ranges.reduce((n, r) => n + r.last - r.first + 1, 0);
  const pct = blocksCount > 0 ? (mapped * 100) / blocksCount : 0;
  const lines = [
    '<?xml version="1.0" ?>',
    '<!-- Block map of an image: the blocks listed here hold data and must be written;',
    '     the others are holes and need not be. Read by `bmaptool copy` and `syncpi flash`. -->',
    '<bmap version="2.0">',
    `    <!-- Image size in bytes: ${humanSize(imageSize)} -->`,
    `    <ImageSize> ${imageSize} </ImageSize>`,
    '',
    '    <!-- Size of a block in bytes -->',
    `    <BlockSize> ${blockSize} </BlockSize>`,
    '',
    '    <!-- Count of blocks in the image file -->',
    `    <BlocksCount> ${blocksCount} </BlocksCount>`,
    '',
    `    <!-- Count of mapped blocks: ${humanSize(mapped * blockSize)} or ${pct.toFixed(1)}% -->`,
    `    <MappedBlocksCount> ${mapped} </MappedBlocksCount>`,
    '',
    '    <!-- Type of checksum used in this file -->',
    '    <ChecksumType> sha256 </ChecksumType>',
    '',
    '    <!-- The checksum of this bmap file, computed with this value set to ASCII zeros -->',
    `    <BmapFileChecksum> ${'0'.repeat(64)} </BmapFileChecksum>`,
    '',
    '    <BlockMap>',
    ...ranges.map((r) => `        <Range chksum="${r.sha256}"> ${r.first === r.last ? r.first : `${r.first}-${r.last}`} </Range>`),
    '    </BlockMap>',
    '</bmap>',
    '',
  ];
  const draft = lines.join('\n');
  const sum = createHash('sha256').update(draft, 'utf8').digest('hex');
  return draft.replace(`<BmapFileChecksum> ${'0'.repeat(64)} </BmapFileChecksum>`, `<BmapFileChecksum> ${sum} </BmapFileChecksum>`);
}

/**
 * Map the data of a sparse image file and checksum each range. The SHA-256 of the whole image
 * comes from the same pass: what lies between the ranges is a hole, which reads as zeros, so
 * zeros are hashed there instead of read.
 */
export async function createBmap(imagePath: string, opts: { onProgress?: (done: number, total: number) => void } = {}): Promise<Bmap & { imageSha256: string }> {
  const imageSize = (await stat(imagePath)).size;
  if (imageSize === 0) throw new UserError(`${imagePath} is empty: nothing to map`);
  const blockSize = BMAP_BLOCK_SIZE;
  const { extents } = await dataExtents(imagePath);
  const blocks = extentsToBlocks(extents, blockSize);
  const total = blocks.reduce((n, [f, l]) => n + (l - f + 1) * blockSize, 0);
  const fh = await open(imagePath, 'r');
  const buf = Buffer.allocUnsafe(4 << 20);
  const zeros = Buffer.alloc(4 << 20);
  const whole = createHash('sha256');
  const holeUntil = (from: number, to: number): void => {
    for (let pos = from; pos < to; pos += zeros.length) whole.update(zeros.subarray(0, Math.min(zeros.length, to - pos)));
  };
  const ranges: BmapRange[] = [];
  let done = 0;
  let hashed = 0;
  try {
    for (const [first, last] of blocks) {
      const start = first * blockSize;
      const end = Math.min((last + 1) * blockSize, imageSize);
      holeUntil(hashed, start);
      ranges.push({ first, last, sha256: await hashRange(fh, start, end, buf, whole) });
      hashed = end;
      done += (last - first + 1) * blockSize;
      opts.onProgress?.(done, total);
    }
    holeUntil(hashed, imageSize);
  } finally {
    await fh.close();
  }
  const xml = renderBmap(imageSize, ranges, blockSize);
  const mappedBlocks = ranges.reduce((n, r) => n + r.last - r.first + 1, 0);
  return { xml, blockSize, imageSize, blocksCount: Math.ceil(imageSize / blockSize), mappedBlocks, ranges, imageSha256: whole.digest('hex') };
}
