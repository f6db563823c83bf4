/**
 * Block maps (bmap format 2.0, the one `bmaptool copy` reads): which 4 KiB blocks of an image
 * hold data, with a SHA-256 per range, so a flasher writes only those blocks and can verify them.
 * The format's types and rules live here; parse.ts reads a bmap, create.ts maps an image and
 * writes one, extents.ts finds the data of a sparse file. Image building writes bmaps and
 * flashing reads them: both import from this folder.
 */
import { createHash } from 'node:crypto';

export const BMAP_BLOCK_SIZE = 4096;

export interface BmapRange {
  /** First and last block, inclusive (as in the XML). */
  first: number;
  last: number;
  sha256: string;
}

export interface Bmap {
  xml: string;
  blockSize: number;
  imageSize: number;
  /** Number of blocks of the image, the last one possibly partial. */
  blocksCount: number;
  mappedBlocks: number;
  ranges: BmapRange[];
}

/** The file checksum of a bmap: bmaptool hashes the file with the checksum's own value replaced by ASCII zeros. */
export function bmapChecksum(xml: string, recorded: string): string {
  const pos = xml.indexOf(recorded);
  const zeroed = xml.slice(0, pos) + '0'.repeat(recorded.length) + xml.slice(pos + recorded.length);
  return createHash('sha256').update(zeroed, 'utf8').digest('hex');
}

/** The bmap that belongs to an image: NAME.bmap beside NAME.img or NAME.img.xz. */
export function bmapPathFor(imagePath: string): string {
  return imagePath.replace(/\.xz$/, '').replace(/\.img$/, '') + '.bmap';
}
