#!/usr/bin/env node
// Compare two built images or layers entry by entry (not a test): root and boot partitions, each
// entry's type, mode, owners and content hash or link target, times left out.
//   node bench/compare-base.mjs A.img B.img
// Used to check that a change to how the base is built (native tools in the bootstrap, say)
// leaves the same tree: build the base layer both ways and compare the two layer images
// (~/.cache/syncpi/layers/KEY.img). Prints the entries that differ; what differs by nature between
// two runs (random keys, logs) is only named, and the shadow files and the initramfs are compared
// without the build's date and the members' times.
import { register } from 'tsx/esm/api';

register();
const [a, b] = process.argv.slice(2);
if (!a || !b) {
  process.stderr.write('usage: node bench/compare-base.mjs A.img B.img\n');
  process.exit(2);
}
const { withCleanup } = await import('../src/util/cleanup.ts');
const { attachImage, mountDev, tempMountpoint } = await import('../src/image/loop.ts');
const { stageBoot } = await import('../src/image/bootpart.ts');
const { treeOf } = await import('../test/integration/build-support.ts');
const { mkdtempSync, rmSync } = await import('node:fs');
const { tmpdir } = await import('node:os');
const { join } = await import('node:path');

// Made anew by every run: keys and seeds are random, logs and caches carry times. The shadow
// files and the initramfs are compared without their dates instead (sameBut below).
const VOLATILE = [/^\/root\/etc\/ssh\/ssh_host_/, /^\/root\/var\/log\//, /^\/root\/var\/cache\/ldconfig\/aux-cache$/, /-old$/, /^\/root\/var\/lib\/systemd\/random-seed$/];

const { execFileSync } = await import('node:child_process');
const { createHash } = await import('node:crypto');
const { readFileSync } = await import('node:fs');

/** An initramfs (cpio "newc" archives, each after the first maybe zstd-compressed) as name, mode, size and hash per member, times left out. */
function initramfsListing(file) {
  const members = [];
  let data = readFileSync(file);
  for (let part = 0; data.length && part < 8; part++) {
    let off = 0;
    while (data.subarray(off, off + 6).toString() === '070701') {
      const field = (i) => parseInt(data.subarray(off + 6 + 8 * i, off + 14 + 8 * i).toString(), 16);
      const [mode, size, nameLen] = [field(1), field(6), field(11)];
      const name = data.subarray(off + 110, off + 110 + nameLen - 1).toString();
      const body = (off + 110 + nameLen + 3) & ~3;
      off = (body + size + 3) & ~3;
      if (name === 'TRAILER!!!') break;
      members.push(`${name} ${mode.toString(8)} ${size} ${createHash('sha256').update(data.subarray(body, body + size)).digest('hex')}`);
    }
    while (off < data.length && data[off] === 0) off++;
    if (off === 0) data = execFileSync('zstd', ['-dc'], { input: data, maxBuffer: 1 << 30 });
    else data = data.subarray(off);
  }
  return members.sort().join('\n');
}

const withoutDates = {
  // the third field of a shadow entry is the day the password last changed: the build's day
  shadow: (file) => readFileSync(file, 'utf8').split('\n').map((l) => l.split(':').filter((_, i) => i !== 2).join(':')).join('\n'),
  initramfs: initramfsListing,
};
const DATED = [[/^\/root\/etc\/shadow-?$/, 'shadow'], [/^\/(root\/)?boot\/initrd\.img-/, 'initramfs']];

async function tree(img) {
  return withCleanup(async (scope) => {
    const dev = await attachImage(scope, img);
    const out = new Map();
    const root = await tempMountpoint(scope, 'mnt:root');
    await mountDev(scope, dev.partition(2), root, 'mount:root', 'ro');
    for (const [k, v] of treeOf(root)) out.set(`/root${k}`, v);
    const undated = (k, dir) => {
      const rule = DATED.find(([re]) => re.test(k));
      if (rule) out.set(k, `${out.get(k).replace(/ [0-9a-f]{64}$/, '')} undated ${createHash('sha256').update(withoutDates[rule[1]](join(dir, k.replace(/^\/(root|boot)/, '')))).digest('hex')}`);
    };
    for (const k of out.keys()) undated(k, root);
    await scope.release('mount:root');
    // the FAT partition is read with mtools, as the build does (no vfat driver needed)
    const boot = mkdtempSync(join(tmpdir(), 'syncpi-compare-boot-'));
    scope.defer('boot:dir', () => rmSync(boot, { recursive: true, force: true }));
    await stageBoot(dev.partition(1), boot);
    for (const [k, v] of treeOf(boot)) {
      out.set(`/boot${k}`, v.replace(/^(\w+) \S+ \S+/, '$1'));
      undated(`/boot${k}`, boot);
    }
    return out;
  });
}

const [ta, tb] = [await tree(a), await tree(b)];
const keys = [...new Set([...ta.keys(), ...tb.keys()])].sort();
const differ = keys.filter((k) => ta.get(k) !== tb.get(k));
const volatile = differ.filter((k) => VOLATILE.some((re) => re.test(k)));
const real = differ.filter((k) => !volatile.includes(k));
process.stdout.write(`${keys.length} entries; ${differ.length} differ: ${volatile.length} made anew by every run, ${real.length} others\n`);
for (const k of real) process.stdout.write(`  ${k}\n    A: ${ta.get(k) ?? '(absent)'}\n    B: ${tb.get(k) ?? '(absent)'}\n`);
if (volatile.length) process.stdout.write(`made anew by every run: ${volatile.join(' ')}\n`);
