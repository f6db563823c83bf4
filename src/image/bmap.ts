/**
 * Block maps (bmap format 2.0, the one `bmaptool copy` reads): which 4 KiB blocks of an image
 * hold data, with a SHA-256 per range, so a flasher writes only those blocks and can verify them.
 *
 * Finding the data of a sparse file needs the FIEMAP ioctl or lseek(SEEK_DATA/SEEK_HOLE), and
 * Node exposes neither. A few lines of perl do both: perl-base is Essential on Debian and Ubuntu
 * (and present on practically every Linux desktop), so it is on the laptop of whoever flashes a
 * card, whereas python3 is not guaranteed (it is the fallback, SEEK_DATA only). `filefrag` was
 * rejected because its output is meant for humans and it cannot fall back to SEEK_DATA where
 * FIEMAP is missing (tmpfs). Detecting zero blocks by reading was rejected: a zero block inside
 * a file is data, and skipping it would leave stale card contents there. With no interpreter at
 * all the whole file is treated as data: slower, never wrong.
 */
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { run } from '../util/run.js';
import { Failure, UserError } from '../util/errors.js';

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

/** Byte extent [start, end) of data in a file. */
export interface Extent {
  start: number;
  end: number;
}

// FIEMAP first, exactly as bmaptool maps: every allocated extent counts as data, including
// preallocated ("unwritten") extents that mkfs zeroed on purpose (inode tables flagged as
// zeroed, the journal): a card must get those zeros, not its old contents. SEEK_DATA would call
// them holes. Where FIEMAP is unsupported (tmpfs, some network file systems) SEEK_DATA/SEEK_HOLE
// (3 and 4 on Linux) it is. The first output line names the method. "0 but true", hence +0.
const PERL_EXTENTS = `
use Fcntl;
sysopen(my $fh, $ARGV[0], O_RDONLY) or die "open: $!\\n";
my $size = -s $fh;
my ($pos, $n, $ok) = (0, 256, 1);
my @out;
while ($pos < $size) {
  # struct fiemap: start, length, flags (FIEMAP_FLAG_SYNC), mapped, count, reserved; 56-byte extents
  my $buf = pack("QQLLLL", $pos, $size - $pos, 1, 0, $n, 0) . ("\\0" x (56 * $n));
  if (!ioctl($fh, 0xC020660B, $buf)) { $ok = 0; last; }
  my $mapped = (unpack("QQLL", $buf))[3];
  last if $mapped == 0;
  my $final = 0;
  for my $i (0 .. $mapped - 1) {
    my ($lo, $ph, $len, $r1, $r2, $fl) = unpack("QQQQQL", substr($buf, 32 + 56 * $i, 56));
    push @out, [$lo, $lo + $len];
    $pos = $lo + $len;
    $final = 1 if $fl & 1;
  }
  last if $final;
}
if ($ok) { print "fiemap\\n"; print "$_->[0] $_->[1]\\n" for @out; exit 0; }
print "seek\\n";
$pos = 0;
while ($pos < $size) {
  my $d = sysseek($fh, $pos, 3);
  if (!defined $d) { last if $!{ENXIO}; die "seek: $!\\n"; }
  my $h = sysseek($fh, $d + 0, 4);
  $h = $size unless defined $h;
  print $d + 0, " ", $h + 0, "\\n";
  $pos = $h + 0;
}`;

const PYTHON_EXTENTS = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
pos = 0
while pos < size:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as e:
        if e.errno == 6: break
        raise
    h = os.lseek(fd, d, os.SEEK_HOLE)
    print(d, h)
    pos = h
`;

function parseExtents(out: string, size: number): Extent[] {
  const extents: Extent[] = [];
  for (const line of out.split('\n')) {
    if (!line.trim() || line === 'fiemap' || line === 'seek') continue;
    const [a, b] = line.trim().split(/\s+/).map(Number);
    if (a === undefined || b === undefined || !Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < 0 || b <= a) {
      throw new Failure(`unexpected output while mapping holes: ${JSON.stringify(line)}`);
    }
    if (a < size) extents.push({ start: a, end: Math.min(b, size) });
  }
  return extents.sort((x, y) => x.start - y.start);
}

/** Data extents of a (possibly sparse) file, via SEEK_DATA/SEEK_HOLE. */
export async function dataExtents(path: string): Promise<{ extents: Extent[]; method: 'fiemap' | 'seek' | 'whole-file' }> {
  const size = (await stat(path)).size;
  const attempts: Array<['perl' | 'python3', string[]]> = [
    ['perl', ['-e', PERL_EXTENTS, path]],
    ['python3', ['-c', PYTHON_EXTENTS, path]],
  ];
  for (const [cmd, args] of attempts) {
    try {
      const r = await run(cmd, args);
      return { extents: parseExtents(r.stdout, size), method: r.stdout.startsWith('fiemap') ? 'fiemap' : 'seek' };
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') continue;
      throw new Failure(`cannot map the holes of ${path}: ${(e as { stderr?: string }).stderr?.trim() || String(e)}`);
    }
  }
  return { extents: size > 0 ? [{ start: 0, end: size }] : [], method: 'whole-file' };
}

/** Round extents out to whole blocks and merge the ones that touch: inclusive block ranges. */
export function extentsToBlocks(extents: Extent[], blockSize: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const e of extents) {
    const first = Math.floor(e.start / blockSize);
    const last = Math.ceil(e.end / blockSize) - 1;
    const prev = out[out.length - 1];
    if (prev && first <= prev[1] + 1) prev[1] = Math.max(prev[1], last);
    else out.push([first, last]);
  }
  return out;
}

async function hashRange(fh: import('node:fs/promises').FileHandle, start: number, end: number, buf: Buffer): Promise<string> {
  const h = createHash('sha256');
  let pos = start;
  while (pos < end) {
    const n = Math.min(buf.length, end - pos);
    const { bytesRead } = await fh.read(buf, 0, n, pos);
    if (bytesRead === 0) break;
    h.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return h.digest('hex');
}

function humanSize(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

export function bmapChecksum(xml: string, recorded: string): string {
  // bmaptool hashes the file with the checksum's own value replaced by ASCII zeros
  const pos = xml.indexOf(recorded);
  const zeroed = xml.slice(0, pos) + '0'.repeat(recorded.length) + xml.slice(pos + recorded.length);
  return createHash('sha256').update(zeroed, 'utf8').digest('hex');
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

/** Map the data of a sparse image file and checksum each range. */
export async function createBmap(imagePath: string, opts: { onProgress?: (done: number, total: number) => void } = {}): Promise<Bmap> {
  const imageSize = (await stat(imagePath)).size;
  if (imageSize === 0) throw new UserError(`${imagePath} is empty: nothing to map`);
  const blockSize = BMAP_BLOCK_SIZE;
  const { extents } = await dataExtents(imagePath);
  const blocks = extentsToBlocks(extents, blockSize);
  const total = blocks.reduce((n, [f, l]) => n + (l - f + 1) * blockSize, 0);
  const fh = await open(imagePath, 'r');
  const buf = Buffer.allocUnsafe(4 << 20);
  const ranges: BmapRange[] = [];
  let done = 0;
  try {
    for (const [first, last] of blocks) {
      const start = first * blockSize;
      const end = Math.min((last + 1) * blockSize, imageSize);
      ranges.push({ first, last, sha256: await hashRange(fh, start, end, buf) });
      done += (last - first + 1) * blockSize;
      opts.onProgress?.(done, total);
    }
  } finally {
    await fh.close();
  }
  const xml = renderBmap(imageSize, ranges, blockSize);
  const mappedBlocks = ranges.reduce((n, r) => n + r.last - r.first + 1, 0);
  return { xml, blockSize, imageSize, blocksCount: Math.ceil(imageSize / blockSize), mappedBlocks, ranges };
}

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

/** The bmap that belongs to an image: NAME.bmap beside NAME.img or NAME.img.xz. */
export function bmapPathFor(imagePath: string): string {
  return imagePath.replace(/\.xz$/, '').replace(/\.img$/, '') + '.bmap';
}
