/**
 * Reading a bmap: parse and validate the XML (format 2.x with sha256).
 */
import { UserError } from '../util/errors.js';
import { bmapChecksum, type Bmap, type BmapRange } from './format.js';

function tagText(xml: string, tag: string, where: string): string {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  if (!m) throw new UserError(`${where}: not a bmap file (no <${tag}> element)`);
  return m[1]!.trim();
}

function intTag(xml: string, tag: string, where: string): number {
  const t = tagText(xml, tag, where);
  if (!/^\d+$/.test(t) || !Number.isSafeInteger(Number(t))) throw new UserError(`${where}: <${tag}> must be a whole number, found "${t}"`);
  return Number(t);
}

/**
 * Parse and validate a bmap (format 2.x with sha256, what we and current bmaptool write):
 * the file checksum, the counts and that ranges are in order, inside the image and disjoint.
 * `where` names the file in error messages.
 */
export function parseBmap(xml: string, where = 'bmap'): Bmap {
  const version = /<bmap\s+version="(\d+)\.(\d+)"/.exec(xml);
  if (!version) throw new UserError(`${where}: not a bmap file (no <bmap version="…"> element)`);
  if (version[1] !== '2' && !(version[1] === '1' && version[2] === '4')) {
    throw new UserError(`${where}: bmap format ${version[1]}.${version[2]} is not supported (valid: 2.x, as written by bmaptool 3.x)`);
  }
  const imageSize = intTag(xml, 'ImageSize', where);
  const blockSize = intTag(xml, 'BlockSize', where);
  const blocksCount = intTag(xml, 'BlocksCount', where);
  const mappedCount = intTag(xml, 'MappedBlocksCount', where);
  const csType = tagText(xml, 'ChecksumType', where);
  if (csType !== 'sha256') throw new UserError(`${where}: checksum type "${csType}" is not supported (valid: sha256)`);
  if (blockSize <= 0 || blockSize % 512 !== 0) throw new UserError(`${where}: BlockSize ${blockSize} is not a multiple of 512`);
  if (blocksCount !== Math.ceil(imageSize / blockSize)) {
    throw new UserError(`${where}: BlocksCount ${blocksCount} does not match ImageSize ${imageSize} / BlockSize ${blockSize}`);
  }
  const recorded = tagText(xml, 'BmapFileChecksum', where);
  if (!/^[0-9a-f]{64}$/.test(recorded)) throw new UserError(`${where}: BmapFileChecksum is not a sha256 hex digest`);
  const actual = bmapChecksum(xml, recorded);
  if (actual !== recorded) throw new UserError(`${where}: the bmap file is corrupt (its checksum is ${actual}, it records ${recorded})`);

  const ranges: BmapRange[] = [];
  const re = /<Range(\s+chksum="([0-9a-fA-F]+)")?\s*>\s*(\d+)(?:\s*-\s*(\d+))?\s*<\/Range>/g;
  const body = /<BlockMap>([\s\S]*)<\/BlockMap>/.exec(xml);
  if (!body) throw new UserError(`${where}: not a bmap file (no <BlockMap> element)`);
  const stray = body[1]!.replace(/<!--[\s\S]*?-->/g, '').replace(re, '').trim();
  if (stray) throw new UserError(`${where}: unexpected content in <BlockMap>: ${JSON.stringify(stray.slice(0, 60))}`);
  let prevLast = -1;
  let mapped = 0;
  for (const m of body[1]!.matchAll(re)) {
    const first = Number(m[3]);
    const last = m[4] !== undefined ? Number(m[4]) : first;
    if (!m[2]) throw new UserError(`${where}: range ${m[3]}${m[4] ? `-${m[4]}` : ''} has no chksum attribute`);
    if (m[2].length !== 64) throw new UserError(`${where}: range ${first}-${last} has a checksum that is not sha256`);
    if (last < first || first <= prevLast || last >= blocksCount) {
      throw new UserError(`${where}: range ${first}-${last} is out of order, overlapping or past the image end (${blocksCount} blocks)`);
    }
    prevLast = last;
    mapped += last - first + 1;
    ranges.push({ first, last, sha256: m[2].toLowerCase() });
  }
  if (mapped !== mappedCount) throw new UserError(`${where}: MappedBlocksCount is ${mappedCount} but the ranges cover ${mapped} blocks`);
  return { xml, blockSize, imageSize, blocksCount, mappedBlocks: mapped, ranges };
}
