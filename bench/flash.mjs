#!/usr/bin/env node
// Flashing benchmark, side by side in one run onto the same loop device (root needed):
//   syncpi flash (write + read-back verify), dd bs=4M conv=fsync, bmaptool copy (no read-back).
// Page caches are dropped before every run and the loop device's backing file is recreated, so
// each tool starts from the same empty device.
//
//   node bench/flash.mjs [IMAGE.img|IMAGE.img.xz] [--runs N]
//
// Without an image, a ~1 GiB sparse image is generated: MBR, 256 MiB FAT32 bootfs, ext4 holding
// ~450 MiB of mixed data (random, text, many small files), like an appliance image.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { $, which } from 'zx';

// a failing tool throws with its stderr; its output is not echoed while it runs
$.quiet = true;

const ROOT = resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const runsIdx = args.indexOf('--runs');
const RUNS = runsIdx >= 0 ? Number(args.splice(runsIdx, 2)[1]) : 1;
const given = args[0];

for (const t of ['losetup', 'dd', 'bmaptool', 'sfdisk', 'mkfs.vfat', 'mkfs.ext4', 'mcopy', 'xz']) {
  if (!(await which(t, { nothrow: true }))) {
    console.error(`missing host tool: ${t} (apt install util-linux coreutils bmap-tools fdisk dosfstools e2fsprogs mtools xz-utils)`);
    process.exit(2);
  }
}
if (process.getuid?.() !== 0) {
  console.error('the benchmark writes to a loop device: run it as root');
  process.exit(2);
}

const work = mkdtempSync(join(tmpdir(), 'syncpi-bench-'));
let loop;
const cleanup = () => {
  // synchronous: it also runs from the signal handlers, which cannot wait
  if (loop) $.sync({ nothrow: true })`losetup -d ${loop}`;
  loop = undefined;
  rmSync(work, { recursive: true, force: true });
};
process.on('SIGINT', () => { cleanup(); process.exit(130); });
process.on('SIGTERM', () => { cleanup(); process.exit(143); });

async function generateImage() {
  const img = join(work, 'bench.img');
  const MiB = 1024 * 1024;
  await $`truncate -s 1G ${img}`;
  const bootStart = 8192, bootSectors = 256 * 2048, rootStart = bootStart + bootSectors;
  await $({ input: `label: dos\nstart=${bootStart}, size=${bootSectors}, type=c\nstart=${rootStart}, type=83\n` })`sfdisk -q ${img}`;
  await $`mkfs.vfat -F 32 -s 2 -n bootfs --offset ${bootStart} ${img} ${bootSectors / 2}`;
  const boot = join(work, 'boot');
  mkdirSync(boot);
  await $`head -c 24M /dev/urandom > ${join(boot, 'kernel8.img')}; head -c 8M /dev/urandom > ${join(boot, 'initramfs8')}; seq 1 20000 > ${join(boot, 'config.txt')}`;
  for (const f of ['kernel8.img', 'initramfs8', 'config.txt']) {
    await $({ env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } })`mcopy -i ${`${img}@@${bootStart * 512}`} ${join(boot, f)} ::/`;
  }
  const tree = join(work, 'rootfs');
  mkdirSync(join(tree, 'usr/lib'), { recursive: true });
  mkdirSync(join(tree, 'usr/share/small'), { recursive: true });
  // random (already-compressed packages), text (configs, docs), and thousands of small files
  await $`head -c 300M /dev/urandom > ${join(tree, 'usr/lib/blob')}`;
  await $`seq 1 12000000 > ${join(tree, 'usr/lib/text')}`;
  await $`cd ${join(tree, 'usr/share/small')} && for i in $(seq 0 2999); do head -c $(( (i % 40 + 1) * 1024 )) /dev/urandom > f$i; done`;
  const rootBytes = 1024 * MiB - rootStart * 512;
  await $`mkfs.ext4 -q -L rootfs -E ${`offset=${rootStart * 512}`} -d ${tree} ${img} ${`${rootBytes / 1024}k`}`;
  rmSync(tree, { recursive: true, force: true });
  rmSync(boot, { recursive: true, force: true });
  return img;
}

/** The image to flash, as a sparse .img with NAME.bmap beside it (in our work dir). */
async function prepareImage() {
  if (!given) return generateImage();
  const src = resolve(given);
  if (!existsSync(src)) throw new Error(`${src} not found`);
  const img = join(work, basename(src).replace(/\.xz$/, ''));
  if (src.endsWith('.xz')) {
    console.log(`decompressing ${src} (not timed)…`);
    await $`xz -dc -T0 ${src} | cp --sparse=always /dev/stdin ${img}`;
  } else {
    symlinkSync(src, img);
  }
  return img;
}

async function dropCaches() {
  await $`sync`;
  writeFileSync('/proc/sys/vm/drop_caches', '3\n');
}

/** A fresh, empty loop device the size of the image (+64 MiB). */
async function freshLoop(size) {
  if (loop) await $`losetup -d ${loop}`;
  loop = undefined;
  const backing = join(work, 'target.bin');
  rmSync(backing, { force: true });
  await $`truncate -s ${size + 64 * 1024 * 1024} ${backing}`;
  loop = (await $`losetup --find --show ${backing}`).stdout.trim();
  return loop;
}

async function timeIt(fn) {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

const syncpiArgv = () => {
  const dist = join(ROOT, 'dist/src/cli/main.js');
  return existsSync(dist) ? [dist] : ['--import', 'tsx', join(ROOT, 'src/cli/main.ts')];
};

try {
  console.log(given ? `image: ${given}` : 'generating a ~1 GiB sparse appliance-like image…');
  const img = await prepareImage();
  const bmap = img.replace(/\.img$/, '') + '.bmap';
  if (!existsSync(bmap)) await $`bmaptool create -o ${bmap} ${img}`;
  const size = statSync(img).size;
  const mapped = Number(/<MappedBlocksCount>\s*(\d+)/.exec(readFileSync(bmap, 'utf8'))[1]) * 4096;
  console.log(`image ${(size / 2 ** 20).toFixed(0)} MiB, ${(mapped / 2 ** 20).toFixed(0)} MiB mapped; ${RUNS} run(s) each\n`);

  const tools = {
    'syncpi flash (write+verify)': (dev) => $({ cwd: ROOT })`${process.execPath} ${syncpiArgv()} flash ${img} --device ${dev} --allow-fixed --yes --no-eject`,
    'dd bs=4M conv=fsync': (dev) => $`dd ${`if=${img}`} ${`of=${dev}`} bs=4M conv=fsync status=none`,
    'bmaptool copy': (dev) => $`bmaptool -q copy --bmap ${bmap} ${img} ${dev}`,
  };
  const times = {};
  for (let run = 0; run < RUNS; run++) {
    for (const [name, fn] of Object.entries(tools)) {
      const dev = await freshLoop(size);
      await dropCaches();
      const s = await timeIt(() => fn(dev));
      (times[name] ??= []).push(s);
      console.log(`  ${name.padEnd(28)} ${s.toFixed(2)} s`);
    }
  }
  const best = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, Math.min(...v)]));
  const s = best['syncpi flash (write+verify)'];
  const dd = best['dd bs=4M conv=fsync'];
  const bm = best['bmaptool copy'];
  console.log('\nbest of runs:');
  for (const [k, v] of Object.entries(best)) console.log(`  ${k.padEnd(28)} ${v.toFixed(2)} s  (${(mapped / 2 ** 20 / v).toFixed(0)} MiB/s of mapped data)`);
  console.log(`\nsyncpi (write+verify) / bmaptool (write only): ${(s / bm).toFixed(2)}  (target <= 1.00: ${s <= bm ? 'met' : 'NOT met'})`);
  console.log(`dd / syncpi: ${(dd / s).toFixed(2)}x  (target >= 2x: ${dd / s >= 2 ? 'met' : 'NOT met'})`);
} finally {
  cleanup();
}
