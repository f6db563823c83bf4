/**
 * The layer cache's pruning (src/image/layer-prune.ts) on a cache of stand-in layers: which go,
 * which stay, and what killed builds left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheDir, LAYER_FORMAT, layerPaths, type LayerMeta } from '../../src/image/cache.js';
import { pruneLayers, touchLayer } from '../../src/image/layer-prune.js';

const DEBIAN = { kind: 'debian', suite: 'trixie', arch: 'arm64', mirror: 'http://mirror.invalid/debian' };

async function withCache(fn: () => Promise<void>): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'syncpi-prune-'));
  const saved = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = cache;
  try {
    await fn();
  } finally {
    if (saved === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved;
    rmSync(cache, { recursive: true, force: true });
  }
}

/** A stand-in layer last used `minutesAgo`. */
function layer(key: string, minutesAgo: number, o: { parent?: string; format?: number; base?: Record<string, unknown> } = {}): void {
  const p = layerPaths(key);
  // incompressible: the space it takes is counted on any file system
  writeFileSync(p.img, randomBytes(4096));
  const meta: LayerMeta = { key, format: o.format ?? LAYER_FORMAT, created: '', base: o.base ?? DEBIAN, buildMs: 0, ...(o.parent ? { parent: o.parent } : {}) };
  writeFileSync(p.meta, JSON.stringify(meta));
  const t = new Date(Date.now() - minutesAgo * 60_000);
  utimesSync(p.meta, t, t);
}

const left = () => readdirSync(cacheDir('layers')).filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)).sort();

test('the packages layers used last stay with their bases; older ones, old formats and orphans go, images and records both', async () => {
  await withCache(async () => {
    layer('base-now', 5);
    layer('base-old', 600);
    layer('base-older', 900);
    layer('base-oldest', 1200);
    for (let i = 1; i <= 6; i++) layer(`pk${i}`, i * 10, { parent: 'base-now' });
    // a packages layer not among the last used, on the base used least: both go
    layer('pk-on-oldest', 1000, { parent: 'base-oldest' });
    layer('pk-on-gone', 1, { parent: 'base-never-built' });
    layer('pk-on-stock', 2, { parent: 'f'.repeat(64), base: { kind: 'image', sha256: 'f'.repeat(64) } });
    layer('old-format', 0, { format: LAYER_FORMAT - 1 });
    // a newer syncpi's, sharing the cache: not this one's to judge
    layer('new-format', 3000, { format: LAYER_FORMAT + 1 });
    const r = await pruneLayers(['pk6']);
    // kept: the 4 packages layers used last (pk-on-stock, pk1..pk3), pk6 (the caller's), their
    // base, and the 2 bases used last; pk-on-gone is an orphan whatever its age
    assert.deepEqual(left(), ['base-now', 'base-old', 'new-format', 'pk-on-stock', 'pk1', 'pk2', 'pk3', 'pk6']);
    const why = Object.fromEntries(r.removed.map((x) => [x.key, x.why]));
    assert.deepEqual(Object.keys(why).sort(), ['base-older', 'base-oldest', 'old-format', 'pk-on-gone', 'pk-on-oldest', 'pk4', 'pk5']);
    assert.match(why['pk4']!, /not among the 4 packages layers used last/);
    assert.match(why['pk-on-gone']!, /base layer is gone/);
    assert.match(why['old-format']!, /older layer format/);
    for (const key of Object.keys(why)) assert.ok(!existsSync(layerPaths(key).img), `${key}: its image is gone too`);
    assert.ok(r.removed.every((x) => x.bytes >= 4096), 'the space each freed is counted');
    // nothing more to remove the second time
    assert.deepEqual((await pruneLayers(['pk6'])).removed, []);
  });
});

test('a layer a build takes up is the last to go; a base under a kept packages layer stays however old', async () => {
  await withCache(async () => {
    layer('b1', 100);
    layer('b2', 200);
    layer('b3', 300);
    layer('p-on-b3', 50, { parent: 'b3' });
    for (let i = 1; i <= 4; i++) layer(`p${i}`, 60 + i, { parent: 'b1' });
    await touchLayer('p4');
    await pruneLayers([]);
    assert.deepEqual(left(), ['b1', 'b2', 'b3', 'p-on-b3', 'p1', 'p2', 'p4']);
  });
});

test('what killed builds left goes; what a running build holds, or a process still works in, stays', async () => {
  await withCache(async () => {
    const gone = spawn('true');
    await new Promise((res) => gone.on('exit', res));
    const dead = gone.pid!;
    const layers = cacheDir('layers');
    const work = cacheDir('work');
    const aged = (path: string, minutes: number) => utimesSync(path, new Date(Date.now() - minutes * 60_000), new Date(Date.now() - minutes * 60_000));
    writeFileSync(join(layers, `k1.img.partial-${dead}`), 'x');
    writeFileSync(join(layers, `k2.img.partial-${process.pid}`), 'x');
    // a layer image whose record never came (killed between the two renames), and a record half-written
    writeFileSync(join(layers, 'k3.img'), 'x');
    aged(join(layers, 'k3.img'), 120);
    writeFileSync(join(layers, 'k4.json.tmp'), '{');
    aged(join(layers, 'k4.json.tmp'), 120);
    // the same, a moment ago: a build between its two renames right now
    writeFileSync(join(layers, 'k5.img'), 'x');
    writeFileSync(join(layers, 'k5.json.tmp'), '{');
    mkdirSync(join(work, `k1-${dead}`, 'root/etc'), { recursive: true });
    mkdirSync(join(work, `k2-${process.pid}`, 'root'), { recursive: true });
    // its node gone, but a process (mmdebstrap's, say) still in the tree
    const busy = join(work, `k6-${dead}`);
    mkdirSync(join(busy, 'root'), { recursive: true });
    const holder = spawn('sleep', ['30'], { cwd: join(busy, 'root') });
    try {
      await new Promise((res) => holder.on('spawn', res));
      const r = await pruneLayers([]);
      assert.deepEqual(r.leftovers.sort(), [join(layers, `k1.img.partial-${dead}`), join(layers, 'k3.img'), join(layers, 'k4.json.tmp'), join(work, `k1-${dead}`)].sort());
      assert.deepEqual(readdirSync(layers).sort(), [`k2.img.partial-${process.pid}`, 'k5.img', 'k5.json.tmp']);
      assert.deepEqual(readdirSync(work).sort(), [`k2-${process.pid}`, `k6-${dead}`]);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

test('an unreadable record goes with its image; a record without an image is no layer and stays', async () => {
  await withCache(async () => {
    layer('fine', 1);
    writeFileSync(layerPaths('garbled').img, 'x');
    writeFileSync(layerPaths('garbled').meta, '{ not json');
    writeFileSync(layerPaths('imageless').meta, JSON.stringify({ key: 'imageless', format: LAYER_FORMAT }));
    const r = await pruneLayers([]);
    assert.deepEqual(r.removed.map((x) => `${x.key}: ${x.why}`), ['garbled: an unreadable record']);
    assert.ok(!existsSync(layerPaths('garbled').img));
    assert.deepEqual(left(), ['fine', 'imageless']);
  });
});
