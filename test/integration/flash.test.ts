/**
 * `syncpi flash` against real loop devices: every refusal, round trips (bmap, .xz, sparse,
 * --to-file), a byte corrupted on the medium between write and verify, a write killed midway,
 * and per-card settings landing in the FAT partition. Needs root and: util-linux, mount, fdisk,
 * dosfstools, mtools, e2fsprogs, xz-utils, bmap-tools.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync, openSync, readSync, writeSync, fsyncSync, closeSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { createBmap } from '../../src/bmap/create.js';
import { parseBmap } from '../../src/bmap/parse.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/cli/main.ts');
const TOOLS = ['losetup', 'lsblk', 'blockdev', 'sfdisk', 'mkfs.vfat', 'mkfs.ext4', 'mcopy', 'mtype', 'xz', 'bmaptool', 'mount'];

const work = mkdtempSync(join(tmpdir(), 'syncpi-flash-test-'));
const attached: string[] = [];
const mounted: string[] = [];

async function x(cmd: string, args: string[], opts: { input?: string } = {}): Promise<string> {
  return (await execa(cmd, args, { input: opts.input, stdin: opts.input === undefined ? 'ignore' : undefined })).stdout;
}

async function attach(file: string, readOnly = false): Promise<string> {
  const dev = (await x('losetup', ['--find', '--show', ...(readOnly ? ['--read-only'] : []), file])).trim();
  attached.push(dev);
  return dev;
}

async function detach(dev: string): Promise<void> {
  const i = attached.indexOf(dev);
  if (i >= 0) attached.splice(i, 1);
  await execa('losetup', ['-d', dev]).catch(() => undefined);
}

async function umount(dir: string): Promise<void> {
  const i = mounted.indexOf(dir);
  if (i >= 0) mounted.splice(i, 1);
  await execa('umount', [dir]).catch(() => undefined);
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run the real CLI (no terminal: stdin is /dev/null), optionally acting on its JSON events. */
function flashCli(args: string[], opts: { env?: Record<string, string>; onEvent?: (e: Record<string, unknown>, kill: () => void) => void } = {}): Promise<Run> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'flash', ...args], {
      cwd: ROOT,
      env: { ...process.env, SYNCPI_STATE_DIR: join(work, 'state'), NO_COLOR: '1', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let pending = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      pending += d.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (opts.onEvent && line.startsWith('{')) opts.onEvent(JSON.parse(line) as Record<string, unknown>, () => child.kill('SIGKILL'));
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stdout, stderr });
    });
  });
}

const IMAGE_MIB = 320;
const BOOT_START = 8192; // sectors
const BOOT_SECTORS = 131072;
const ROOT_START = BOOT_START + BOOT_SECTORS;
let image = '';
let bmapRanges: Array<{ first: number; last: number; sha256: string }> = [];

/** A sparse image like the real one: MBR, FAT32 "bootfs", ext4 with ~100 MiB of data. */
async function buildImage(dir: string): Promise<string> {
  const img = join(dir, 'appliance.img');
  await x('truncate', ['-s', `${IMAGE_MIB}M`, img]);
  await x('sfdisk', ['-q', img], { input: `label: dos\nstart=${BOOT_START}, size=${BOOT_SECTORS}, type=c\nstart=${ROOT_START}, type=83\n` });
  await x('mkfs.vfat', ['-F', '32', '-s', '1', '-n', 'bootfs', '--offset', String(BOOT_START), img, String(BOOT_SECTORS / 2)]);
  writeFileSync(join(dir, 'cmdline.txt'), 'console=serial0,115200 root=LABEL=rootfs rootwait\n');
  await execa('mcopy', ['-i', `${img}@@${BOOT_START * 512}`, join(dir, 'cmdline.txt'), '::/'], { env: { MTOOLS_SKIP_CHECK: '1' } });
  const tree = join(dir, 'rootfs');
  mkdirSync(join(tree, 'data'), { recursive: true });
  await execa('sh', ['-c', 'head -c 100M /dev/urandom > "$1/data/blob"; seq 1 300000 > "$1/data/seq"', 'sh', tree]);
  const rootBytes = IMAGE_MIB * 1024 * 1024 - ROOT_START * 512;
  await x('mkfs.ext4', ['-q', '-L', 'rootfs', '-E', `offset=${ROOT_START * 512}`, '-d', tree, img, `${rootBytes / 1024}k`]);
  rmSync(tree, { recursive: true, force: true });
  return img;
}

async function sparseFile(path: string, mib: number): Promise<string> {
  await x('truncate', ['-s', `${mib}M`, path]);
  return path;
}

/** SHA-256 of each bmap range as read from `dev` (after dropping its cache). */
async function deviceRangeHashes(dev: string): Promise<string[]> {
  await x('blockdev', ['--flushbufs', dev]).catch(() => undefined);
  const fd = openSync(dev, 'r');
  try {
    return bmapRanges.map((r) => {
      const start = r.first * 4096;
      const end = Math.min((r.last + 1) * 4096, IMAGE_MIB * 1024 * 1024);
      const buf = Buffer.alloc(end - start);
      readSync(fd, buf, 0, buf.length, start);
      return createHash('sha256').update(buf).digest('hex');
    });
  } finally {
    closeSync(fd);
  }
}

/** Invert one byte of a file in place, durably. */
function flipByte(file: string, offset: number): void {
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, offset);
    b[0] = b[0]! ^ 0xff;
    writeSync(fd, b, 0, 1, offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The JSON lines of a run's stdout. */
function eventsOf(r: Run): Array<Record<string, unknown>> {
  return r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The error fields of the step that failed, as --json reports them. */
function failedStepError(r: Run): Record<string, unknown> {
  const end = eventsOf(r).find((e) => e.type === 'step-end' && e.ok === false);
  assert.ok(end, `no failed step in the JSON events: ${r.stdout}`);
  assert.equal(typeof end.error, 'object', `the failed step carries no error fields: ${JSON.stringify(end)}`);
  return end.error as Record<string, unknown>;
}

function sha256Of(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Bytes [start, end) of a file or device. */
function readSpan(path: string, start: number, end: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(end - start);
    readSync(fd, buf, 0, buf.length, start);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Index and byte span of the largest bmap range (the ext4 data). */
function largestRange(): { index: number; start: number; end: number } {
  let index = 0;
  bmapRanges.forEach((r, i) => {
    const b = bmapRanges[index]!;
    if (r.last - r.first > b.last - b.first) index = i;
  });
  const r = bmapRanges[index]!;
  return { index, start: r.first * 4096, end: Math.min((r.last + 1) * 4096, IMAGE_MIB * 1024 * 1024) };
}

function assertRefused(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 2, `expected exit 2, got ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, pattern);
  assert.equal(r.stderr.trim().split('\n').filter((l) => l.startsWith('error:')).length, 1, r.stderr);
}

before(async () => {
  for (const t of TOOLS) {
    const found = await execa('sh', ['-c', 'command -v "$1"', 'sh', t]).then(() => true, () => false);
    assert.ok(found, `host tool ${t} is missing: install util-linux, mount, fdisk, dosfstools, mtools, e2fsprogs, xz-utils, bmap-tools`);
  }
  assert.equal(process.getuid?.(), 0, 'these tests need root (loop devices)');
  image = await buildImage(work);
  const bmap = await createBmap(image);
  writeFileSync(join(work, 'appliance.bmap'), bmap.xml);
  bmapRanges = bmap.ranges;
});

after(async () => {
  for (const m of [...mounted].reverse()) await umount(m);
  for (const d of [...attached].reverse()) await detach(d);
  rmSync(work, { recursive: true, force: true });
});

describe('bmap', () => {
  test('bmaptool copy accepts our bmap and the copy equals the image byte for byte', async () => {
    const out = join(work, 'bmaptool-copy.img');
    await x('bmaptool', ['copy', '--bmap', join(work, 'appliance.bmap'), image, out]);
    await x('cmp', [image, out]);
    rmSync(out);
  });

  test('our parser accepts the bmap bmaptool writes for the same image, with the same ranges', async () => {
    const out = join(work, 'bmaptool.bmap');
    await x('bmaptool', ['create', '-o', out, image]);
    const theirs = parseBmap(readFileSync(out, 'utf8'));
    assert.deepEqual(theirs.ranges, bmapRanges);
  });
});

describe('refusals (exit 2, one clear line)', () => {
  test('a loop device is not removable: refused without --allow-fixed', async () => {
    const dev = await attach(await sparseFile(join(work, 'fixed.bin'), 400));
    try {
      assertRefused(await flashCli([image, '--device', dev, '--yes']), /not a removable disk: pass --allow-fixed/);
    } finally {
      await detach(dev);
    }
  });

  test('a read-only device', async () => {
    const dev = await attach(await sparseFile(join(work, 'ro.bin'), 400), true);
    try {
      assertRefused(await flashCli([image, '--device', dev, '--yes', '--allow-fixed']), /is read-only/);
    } finally {
      await detach(dev);
    }
  });

  test('a device smaller than the image', async () => {
    const dev = await attach(await sparseFile(join(work, 'small.bin'), 64));
    try {
      assertRefused(await flashCli([image, '--device', dev, '--yes', '--allow-fixed']), /smaller than the image/);
    } finally {
      await detach(dev);
    }
  });

  test('a device with a mounted file system, unless --unmount (which unmounts and writes)', async () => {
    const file = await sparseFile(join(work, 'mounted.bin'), 400);
    await x('mkfs.ext4', ['-q', file]);
    const dev = await attach(file);
    const mnt = join(work, 'mnt-mounted');
    mkdirSync(mnt, { recursive: true });
    try {
      await x('mount', [dev, mnt]);
      mounted.push(mnt);
      assertRefused(await flashCli([image, '--device', dev, '--yes', '--allow-fixed']), /mounted file systems .*pass --unmount/);
      const r = await flashCli([image, '--device', dev, '--yes', '--allow-fixed', '--unmount']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /unmounted/);
      mounted.splice(mounted.indexOf(mnt), 1);
    } finally {
      await umount(mnt);
      await detach(dev);
    }
  });

  test('the device the image file itself lives on (even with --unmount)', async () => {
    const file = await sparseFile(join(work, 'host.bin'), 700);
    await x('mkfs.ext4', ['-q', file]);
    const dev = await attach(file);
    const mnt = join(work, 'mnt-host');
    mkdirSync(mnt, { recursive: true });
    try {
      await x('mount', [dev, mnt]);
      mounted.push(mnt);
      copyFileSync(image, join(mnt, 'appliance.img'));
      assertRefused(await flashCli([join(mnt, 'appliance.img'), '--device', dev, '--yes', '--allow-fixed', '--unmount']), /holds the image file itself/);
      assert.ok(existsSync(join(mnt, 'appliance.img')), 'the file system must still be mounted');
    } finally {
      await umount(mnt);
      await detach(dev);
    }
  });

  test('a loop device backed by the image itself', async () => {
    const dev = await attach(image);
    try {
      assertRefused(await flashCli([image, '--device', dev, '--yes', '--allow-fixed']), /holds the image file itself/);
    } finally {
      await detach(dev);
    }
  });

  test('the system disk (holding /)', async (t) => {
    const tree = JSON.parse(await x('lsblk', ['--json', '-o', 'PATH,TYPE,MOUNTPOINTS'])) as { blockdevices: Array<{ path: string; type: string; mountpoints: Array<string | null>; children?: unknown[] }> };
    const holdsRoot = (n: { mountpoints?: Array<string | null>; children?: unknown[] }): boolean =>
      (n.mountpoints ?? []).includes('/') || ((n.children ?? []) as Array<typeof n>).some(holdsRoot);
    const disk = tree.blockdevices.find(holdsRoot);
    if (!disk) {
      t.skip('/ is not on a block device here (container overlay); covered by the unit test of assessDevice');
      return;
    }
    assertRefused(await flashCli([image, '--device', disk.path, '--yes', '--allow-fixed', '--unmount']), /holds the running system/);
  });

  test('a partition instead of a whole disk', async () => {
    const dev = await attach(await sparseFile(join(work, 'part.bin'), 400));
    try {
      await x('sfdisk', ['-q', dev], { input: 'label: dos\nstart=2048, type=83\n' });
      await x('partx', ['-a', dev]).catch(() => undefined);
      for (let i = 0; i < 50 && !existsSync(`${dev}p1`); i++) await sleep(100);
      assert.ok(existsSync(`${dev}p1`), `${dev}p1 did not appear`);
      assertRefused(await flashCli([image, '--device', `${dev}p1`, '--yes', '--allow-fixed']), /not a whole disk/);
    } finally {
      await detach(dev);
    }
  });

  test('a regular file unless --to-file; a missing path', async () => {
    const file = await sparseFile(join(work, 'plain-file.bin'), 400);
    assertRefused(await flashCli([image, '--device', file, '--yes']), /regular file, not a device: pass --to-file/);
    assertRefused(await flashCli([image, '--device', join(work, 'nope'), '--yes']), /does not exist/);
  });

  test('--to-file never writes through a symbolic link', async () => {
    const victim = join(work, 'victim.bin');
    writeFileSync(victim, 'precious');
    const link = join(work, 'link.img');
    rmSync(link, { force: true });
    symlinkSync(victim, link);
    assertRefused(await flashCli([image, '--device', link, '--to-file', '--yes']), /is a symbolic link: --to-file writes only to the file named/);
    assert.equal(readFileSync(victim, 'utf8'), 'precious');
  });

  test('the disk behind /dev/X changes between the check and the open: refused, nothing written', async () => {
    const first = await sparseFile(join(work, 'swap-a.bin'), 400);
    const second = await sparseFile(join(work, 'swap-b.bin'), 480);
    const dev = await attach(first);
    const gate = join(work, 'gate-open');
    try {
      const run = flashCli([image, '--device', dev, '--yes', '--allow-fixed'], { env: { SYNCPI_FLASH_GATE_BEFORE_OPEN: gate } });
      for (let i = 0; i < 600 && !existsSync(`${gate}.ready`); i++) await sleep(100);
      assert.ok(existsSync(`${gate}.ready`), 'flash did not reach the open');
      // another card in the same slot: the same /dev/loopN, the same device number, another disk
      await x('losetup', ['-d', dev]);
      await x('losetup', [dev, second]);
      writeFileSync(gate, '');
      const r = await run;
      assertRefused(r, new RegExp(`${dev} is no longer the device that was checked \\(its size is ${480 * 1024 * 1024} now, ${400 * 1024 * 1024} when checked\\): nothing was written`));
      for (const f of [first, second]) {
        const head = Buffer.alloc(4096);
        const fd = openSync(f, 'r');
        readSync(fd, head, 0, 4096, 0);
        closeSync(fd);
        assert.ok(head.every((b) => b === 0), `${f} untouched`);
      }
    } finally {
      await detach(dev);
      rmSync(gate, { force: true });
      rmSync(`${gate}.ready`, { force: true });
    }
  });

  test('no terminal: no picker and no confirmation, a one-line error naming the flags', async () => {
    assertRefused(await flashCli([image]), /no --device given and no terminal.*--device.*--yes/);
    const dev = await attach(await sparseFile(join(work, 'noconfirm.bin'), 400));
    try {
      assertRefused(await flashCli([image, '--device', dev, '--allow-fixed']), /without confirmation.*pass --yes/);
    } finally {
      await detach(dev);
    }
  });

  test('bad per-card settings are refused before anything is written', async () => {
    const file = await sparseFile(join(work, 'settings-bad.bin'), 400);
    const dev = await attach(file);
    try {
      assertRefused(await flashCli([image, '--device', dev, '--yes', '--allow-fixed', '--hostname', 'bad_name;reboot']), /not a valid host name/);
      const fd = openSync(dev, 'r');
      const head = Buffer.alloc(512);
      readSync(fd, head, 0, 512, 0);
      closeSync(fd);
      assert.ok(head.every((b) => b === 0), 'nothing may have been written');
    } finally {
      await detach(dev);
    }
  });
});

describe('writing', () => {
  test('round trip with the bmap: exit 0, every mapped range on the device equals the image', async () => {
    const dev = await attach(await sparseFile(join(work, 'rt-bmap.bin'), 400));
    try {
      const events: Array<Record<string, unknown>> = [];
      const r = await flashCli([image, '--device', dev, '--yes', '--allow-fixed', '--json'], { onEvent: (e) => events.push(e) });
      assert.equal(r.code, 0, r.stderr);
      const result = events.find((e) => e.type === 'result')?.data as { verified: boolean; map: string; destination: Record<string, unknown> };
      assert.equal(result.verified, true);
      assert.equal(result.map, 'bmap');
      // the probe: a loop device is a block device that takes direct I/O and has no medium to eject
      const lsblk = JSON.parse(await x('lsblk', ['--json', '--bytes', '-o', 'MAJ:MIN,SIZE', dev])) as { blockdevices: Array<Record<string, unknown>> };
      assert.deepEqual(result.destination, {
        kind: 'block-device',
        path: dev,
        size: 400 * 1024 * 1024,
        identity: `::${400 * 1024 * 1024}`,
        majMin: String(lsblk.blockdevices[0]!['maj:min']).trim(),
        can: { directIo: true, dropCache: true, eject: false },
      });
      // and the writer used it: one pass that writes and reads back, no second verify pass
      const steps = events.filter((e) => e.type === 'step-start').map((e) => String(e.step));
      assert.ok(steps.some((st) => st.startsWith('write and verify ')), steps.join(', '));
      assert.ok(!steps.some((st) => st.startsWith('verify ')), steps.join(', '));
      assert.ok(events.some((e) => e.type === 'progress' && typeof e.rate === 'number'), 'progress events carry a rate');
      assert.deepEqual(await deviceRangeHashes(dev), bmapRanges.map((b) => b.sha256));
    } finally {
      await detach(dev);
    }
  });

  test('round trip of an .img.xz (stream-decompressed) with NAME.bmap beside it', async () => {
    const dir = join(work, 'xz');
    mkdirSync(dir, { recursive: true });
    await execa('sh', ['-c', 'xz -T0 -0 -c "$1" > "$2"', 'sh', image, join(dir, 'appliance.img.xz')]);
    copyFileSync(join(work, 'appliance.bmap'), join(dir, 'appliance.bmap'));
    const dev = await attach(await sparseFile(join(work, 'rt-xz.bin'), 400));
    try {
      const r = await flashCli([join(dir, 'appliance.img.xz'), '--device', dev, '--yes', '--allow-fixed']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /bmap .*appliance\.bmap/);
      assert.deepEqual(await deviceRangeHashes(dev), bmapRanges.map((b) => b.sha256));
    } finally {
      await detach(dev);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('round trip of a sparse image without a bmap (its data ranges) and into a file with --to-file', async () => {
    const dir = join(work, 'nobmap');
    mkdirSync(dir, { recursive: true });
    await x('cp', ['--sparse=always', image, join(dir, 'appliance.img')]);
    const dev = await attach(await sparseFile(join(work, 'rt-sparse.bin'), 400));
    try {
      const r = await flashCli([join(dir, 'appliance.img'), '--device', dev, '--yes', '--allow-fixed']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /data ranges of the sparse file/);
      assert.deepEqual(await deviceRangeHashes(dev), bmapRanges.map((b) => b.sha256));
      const out = join(dir, 'copy.img');
      const f = await flashCli([join(dir, 'appliance.img'), '--device', out, '--to-file', '--yes', '--json']);
      assert.equal(f.code, 0, f.stderr);
      await x('cmp', [image, out]);
      // a file has no direct I/O and no cache to drop: written, then verified in a second pass
      const events = eventsOf(f);
      const result = events.find((e) => e.type === 'result')?.data as { verified: boolean; destination: Record<string, unknown> };
      assert.equal(result.verified, true);
      assert.deepEqual(result.destination, { kind: 'file', path: out, size: IMAGE_MIB * 1024 * 1024, identity: `file:${out}`, can: { directIo: false, dropCache: false, eject: false } });
      assert.deepEqual(events.filter((e) => e.type === 'step-start').map((e) => String(e.step)), [`write ${out}`, `verify ${out}`]);
    } finally {
      await detach(dev);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a byte changed on the medium between write and verify is caught: exit 1 naming the range, offset and both digests, in --json too', async () => {
    const backing = await sparseFile(join(work, 'corrupt.bin'), 400);
    const dev = await attach(backing);
    const gate = join(work, 'gate');
    // a byte in the middle of the largest mapped range (the ext4 data)
    const big = largestRange();
    const offset = Math.floor((big.start + big.end) / 2 / 4096) * 4096 + 123;
    try {
      const run = flashCli([image, '--device', dev, '--yes', '--allow-fixed', '--json'], { env: { SYNCPI_FLASH_GATE_BEFORE_VERIFY: gate, SYNCPI_FLASH_GATE_OFFSET: String(offset) } });
      for (let i = 0; i < 1200 && !existsSync(`${gate}.ready`); i++) await sleep(100);
      assert.ok(existsSync(`${gate}.ready`), 'the write phase did not finish');
      // change the backing file behind the loop device: the device's own page cache still has
      // the good byte, so only a verify that reads the medium can notice
      flipByte(backing, offset);
      writeFileSync(gate, '');
      const r = await run;
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`differs from the image at byte offset ${offset}\\b`));
      assert.equal(JSON.parse(readFileSync(join(work, 'state', 'flash.json'), 'utf8'))[dev].status, 'failed');
      // what the medium holds in that range now: the image's bytes with the one flipped
      await x('blockdev', ['--flushbufs', dev]);
      const actual = sha256Of(readSpan(dev, big.start, big.end));
      const want = bmapRanges[big.index]!;
      assert.notEqual(actual, want.sha256);
      assert.match(r.stderr, new RegExp(`range ${big.index} \\(blocks ${want.first}-${want.last}, bytes ${big.start}-${big.end}\\): expected sha256 ${want.sha256}, read ${actual}`));
      const error = failedStepError(r);
      assert.deepEqual({ ...error, message: undefined }, {
        name: 'ChecksumVerificationError',
        message: undefined,
        subject: 'medium',
        range: big.index,
        firstBlock: want.first,
        lastBlock: want.last,
        offset,
        start: big.start,
        end: big.end,
        expected: want.sha256,
        actual,
      });
      assert.match(String(error.message), /verification failed: .* differs from the image at byte offset/);
    } finally {
      await detach(dev);
      rmSync(gate, { force: true });
      rmSync(`${gate}.ready`, { force: true });
    }
  });

  test('--to-file: a byte changed in the file before its verify pass is caught by that pass, with the same fields', async () => {
    const out = join(work, 'corrupt-copy.img');
    rmSync(out, { force: true });
    const gate = join(work, 'gate-file');
    const big = largestRange();
    const offset = big.start + 77;
    try {
      const run = flashCli([image, '--device', out, '--to-file', '--yes', '--json'], { env: { SYNCPI_FLASH_GATE_BEFORE_VERIFY: gate } });
      for (let i = 0; i < 1200 && !existsSync(`${gate}.ready`); i++) await sleep(100);
      assert.ok(existsSync(`${gate}.ready`), 'the write phase did not finish');
      flipByte(out, offset);
      writeFileSync(gate, '');
      const r = await run;
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`${out} differs from the image at byte offset ${offset}\\b`));
      const error = failedStepError(r);
      const want = bmapRanges[big.index]!;
      assert.deepEqual(
        [error.name, error.subject, error.range, error.offset, error.start, error.end, error.expected, error.actual],
        ['ChecksumVerificationError', 'medium', big.index, offset, big.start, big.end, want.sha256, sha256Of(readSpan(out, big.start, big.end))],
      );
      assert.notEqual(error.actual, want.sha256);
      // the failed step is the second pass: the write itself went through
      const failedStep = eventsOf(r).find((e) => e.type === 'step-end' && e.ok === false);
      assert.equal(failedStep?.step, `verify ${out}`);
    } finally {
      rmSync(out, { force: true });
      rmSync(gate, { force: true });
      rmSync(`${gate}.ready`, { force: true });
    }
  });

  test('an image that does not match its bmap is blamed on the image, with or without verify; the card gets no partition table', async () => {
    const dir = join(work, 'badimg');
    mkdirSync(dir, { recursive: true });
    const bad = join(dir, 'appliance.img');
    await x('cp', ['--sparse=always', image, bad]);
    await x('cp', [image.replace(/\.img$/, '.bmap'), join(dir, 'appliance.bmap')]);
    const big = largestRange();
    const offset = big.start + 4321;
    flipByte(bad, offset);
    const want = bmapRanges[big.index]!;
    const actual = sha256Of(readSpan(bad, big.start, big.end));
    const dev = await attach(await sparseFile(join(work, 'badimg.bin'), 400));
    try {
      for (const extra of [[], ['--no-verify']]) {
        const r = await flashCli([bad, '--device', dev, '--yes', '--allow-fixed', '--json', ...extra]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /appliance\.img does not match its bmap: blocks \d+-\d+/);
        assert.doesNotMatch(r.stderr, /card is faulty/);
        // a digest cannot say which byte of the image changed: the offset is the range's first
        const error = failedStepError(r);
        assert.deepEqual(
          [error.name, error.subject, error.range, error.firstBlock, error.lastBlock, error.offset, error.expected, error.actual],
          ['ChecksumVerificationError', 'image', big.index, want.first, want.last, big.start, want.sha256, actual],
          extra.join(' ') || 'verify',
        );
        const head = Buffer.alloc(512);
        const dfd = openSync(dev, 'r');
        readSync(dfd, head, 0, 512, 0);
        closeSync(dfd);
        assert.ok(!(head[510] === 0x55 && head[511] === 0xaa), `no partition table after a refused image (${extra.join(' ') || 'verify'})`);
      }
    } finally {
      await detach(dev);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a write killed midway is reported as incomplete, never as success', async () => {
    const dev = await attach(await sparseFile(join(work, 'killed.bin'), 400));
    try {
      let killedAt = -1;
      const r = await flashCli([image, '--device', dev, '--yes', '--allow-fixed', '--json'], {
        onEvent: (e, kill) => {
          if (killedAt < 0 && e.type === 'progress' && String(e.step).startsWith('write')) {
            killedAt = Number(e.done);
            kill();
          }
        },
      });
      assert.ok(killedAt >= 0, 'no write progress was seen');
      assert.equal(r.signal, 'SIGKILL');
      assert.notEqual(r.code, 0);
      assert.ok(!r.stdout.includes('"type":"result"'), 'no result after a kill');
      // the card carries no partition table: it cannot pass for a finished card
      const fd = openSync(dev, 'r');
      const head = Buffer.alloc(512);
      readSync(fd, head, 0, 512, 0);
      closeSync(fd);
      assert.ok(!(head[510] === 0x55 && head[511] === 0xaa), 'the partition table must not be on the card');
      assert.equal(JSON.parse(readFileSync(join(work, 'state', 'flash.json'), 'utf8'))[dev].status, 'writing');
      // the next run does not claim success: checking says it does not hold the image
      const v = await flashCli([image, '--device', dev, '--allow-fixed', '--verify-only']);
      assert.equal(v.code, 1, v.stderr);
      // (the first 440 bytes of the image, the MBR's boot code, are zero as is the wiped head)
      const m = /does not hold .*interrupted.*first difference at byte offset (\d+)/.exec(v.stderr);
      assert.ok(m && Number(m[1]) < 4096, v.stderr);
      // and writing again warns, then succeeds
      const again = await flashCli([image, '--device', dev, '--yes', '--allow-fixed']);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stderr, /previous write .* was interrupted/);
      const ok = await flashCli([image, '--device', dev, '--allow-fixed', '--verify-only']);
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      await detach(dev);
    }
  });

  test('per-card settings land in the FAT boot partition as data', async () => {
    const dev = await attach(await sparseFile(join(work, 'settings.bin'), 400));
    const key = join(work, 'id_test.pub');
    const psk = join(work, 'psk');
    writeFileSync(key, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBn7QvX7Vx0Yq3E5Yw5m0q3hQ2Rr8h0C2Wc8x4J0c3aB me@laptop\n');
    writeFileSync(psk, 'pass "word" $(reboot)\n');
    try {
      const r = await flashCli([image, '--device', dev, '--yes', '--allow-fixed', '--hostname', 'pi-kitchen', '--ssh-key', key, '--wifi-ssid', 'Home $(reboot)', '--wifi-psk-file', psk, '--wifi-country', 'DE']);
      assert.equal(r.code, 0, r.stderr);
      const text = (await execa('mtype', ['-i', `${dev}@@${BOOT_START * 512}`, '::/syncpi-firstboot.txt'], { env: { MTOOLS_SKIP_CHECK: '1' } })).stdout;
      assert.match(text, /^hostname=pi-kitchen$/m);
      assert.match(text, /^ssh_key=ssh-ed25519 AAAAC3Nza\S+ me@laptop$/m);
      assert.match(text, /^wifi_ssid=Home \$\(reboot\)$/m);
      assert.match(text, /^wifi_psk=pass "word" \$\(reboot\)$/m);
      assert.match(text, /^wifi_country=DE$/m);
      assert.ok(!r.stderr.includes('pass "word"'), 'the PSK never reaches the output');
      // the rest of the boot partition is untouched
      const cmdline = (await execa('mtype', ['-i', `${dev}@@${BOOT_START * 512}`, '::/cmdline.txt'], { env: { MTOOLS_SKIP_CHECK: '1' } })).stdout;
      assert.match(cmdline, /root=LABEL=rootfs/);
    } finally {
      await detach(dev);
    }
  });
});
