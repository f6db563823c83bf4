/**
 * Where a (possibly sparse) file holds data. Finding that needs the FIEMAP ioctl or
 * lseek(SEEK_DATA/SEEK_HOLE), and Node exposes neither. A few lines of perl do both: perl-base is Essential on Debian and Ubuntu
 * (and present on practically every Linux desktop), so it is on the laptop of whoever flashes a
 * card, whereas python3 is not guaranteed (it is the fallback, SEEK_DATA only). `filefrag` was
 * rejected because its output is meant for humans and it cannot fall back to SEEK_DATA where
 * FIEMAP is missing (tmpfs). Detecting zero blocks by reading was rejected: a zero block inside
 * a file is data, and skipping it would leave stale card contents there. With no interpreter at
 * all the whole file is treated as data: slower, never wrong.
 */
import { stat } from 'node:fs/promises';
import { run } from '../util/run.js';
import { Failure } from '../util/errors.js';

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
