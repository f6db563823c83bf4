#!/usr/bin/env node
// Compare two built images or layers entry by entry (not a test): root and boot partitions, each
// entry's type, mode, owners and content hash or link target, times left out.
//   node bench/compare-base.mjs A.img B.img
// Used to check that a change to how the base is built (native tools in the bootstrap, say)
// leaves the same tree: build the base layer both ways and compare the two layer images. Prints
// the entries that differ; what differs by nature between two runs (random keys, logs) is named.
import { register } from 'tsx/esm/api';

register();
const [a, b] = process.argv.slice(2);
if (!a || !b) {
  process.stderr.write('usage: node bench/compare-base.mjs A.img B.img\n');
  process.exit(2);
}
const { withCleanup } = await import('../src/util/cleanup.ts');
const { attachImage, mountDev, tempMountpoint } = await import('../src/image/loop.ts');
const { treeOf } = await import('../test/integration/build-support.ts');

// Made anew by every run: keys and seeds are random, logs and caches carry times.
const VOLATILE = [/^\/root\/etc\/ssh\/ssh_host_/, /^\/root\/var\/log\//, /^\/root\/var\/cache\/ldconfig\/aux-cache$/, /-old$/, /^\/root\/var\/lib\/systemd\/random-seed$/];

async function tree(img) {
  return withCleanup(async (scope) => {
    const dev = await attachImage(scope, img);
    const out = new Map();
    for (const [part, name] of [[2, 'root'], [1, 'boot']]) {
      const dir = await tempMountpoint(scope, `mnt:${name}`);
      await mountDev(scope, dev.partition(part), dir, `mount:${name}`, 'ro');
      for (const [k, v] of treeOf(dir)) out.set(`/${name}${k}`, v);
      await scope.release(`mount:${name}`);
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
