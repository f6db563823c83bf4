/**
 * The .deb cache (src/image/deb-cache.ts): file names read as apt writes them, each package kept
 * at its highest version by dpkg's own comparison, and the cache bound into a root so the root's
 * apt-get reads and writes it. That bootstraps and packages layers really use it is in
 * test/integration/build.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chownSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bindDebCache, mmdebstrapCacheArgs, parseDebName, pruneDebCache } from '../../src/image/deb-cache.js';
import { withCleanup } from '../../src/util/cleanup.js';

test('deb file names: name, version (epoch unescaped) and arch', () => {
  assert.deepEqual(parseDebName('libc6_2.41-12_arm64.deb'), { name: 'libc6', version: '2.41-12', arch: 'arm64' });
  assert.deepEqual(parseDebName('openssh-server_1%3a10.0p1-7_arm64.deb'), { name: 'openssh-server', version: '1:10.0p1-7', arch: 'arm64' });
  assert.deepEqual(parseDebName('tzdata_2025b-4_all.deb'), { name: 'tzdata', version: '2025b-4', arch: 'all' });
  for (const f of ['lock', 'partial', 'x.deb', 'a_b.deb', 'a_b_c_d.deb', 'a_1_arm64.deb.part']) assert.equal(parseDebName(f), undefined, f);
});

/** Run an mmdebstrap shell hook as mmdebstrap does: `sh -c HOOK exec ROOT`. */
function runHook(arg: string, root: string): void {
  const hook = arg.slice(arg.indexOf('=') + 1);
  execFileSync('sh', ['-c', hook, 'exec', root], { stdio: 'pipe' });
}

for (const across of [false, true]) {
  test(`the bootstrap's hooks ${across ? 'copy (across file systems)' : 'link'} the cache in and bring only new .debs back`, { skip: across && !statSync('/dev/shm', { throwIfNoEntry: false }) }, () => {
    const work = mkdtempSync(join(tmpdir(), 'syncpi-debs-'));
    const rootParent = across ? mkdtempSync('/dev/shm/syncpi-debs-') : work;
    try {
      // a cache path a shell would split or expand if it were not quoted
      const cache = join(work, "my cache $(touch pwned) 'x'");
      mkdirSync(cache);
      writeFileSync(join(cache, 'a_1_arm64.deb'), 'cached a');
      writeFileSync(join(cache, 'notes.txt'), 'not a package');
      const root = join(rootParent, 'root');
      mkdirSync(root);
      const args = mmdebstrapCacheArgs(cache);
      const setup = args.find((a) => a.startsWith('--setup-hook='))!;
      const customize = args.find((a) => a.startsWith('--customize-hook='))!;
      assert.ok(args.includes('--skip=essential/unlink'));

      runHook(setup, root);
      const archives = join(root, 'var/cache/apt/archives');
      assert.deepEqual(readdirSync(archives), ['a_1_arm64.deb'], 'only packages go in');
      assert.equal(statSync(join(archives, 'a_1_arm64.deb')).ino === statSync(join(cache, 'a_1_arm64.deb')).ino, !across);
      assert.ok(!readdirSync(work).includes('pwned') && !readdirSync(process.cwd()).includes('pwned'), 'the path is data, not a command');

      // the bootstrap fetched b, and its own a must not replace the cache's
      writeFileSync(join(archives, 'b_2_arm64.deb'), 'fetched b');
      rmSync(join(archives, 'a_1_arm64.deb'));
      writeFileSync(join(archives, 'a_1_arm64.deb'), 'other a');
      runHook(customize, root);
      assert.deepEqual(readdirSync(cache).sort(), ['a_1_arm64.deb', 'b_2_arm64.deb', 'notes.txt']);
      assert.equal(readFileSync(join(cache, 'b_2_arm64.deb'), 'utf8'), 'fetched b');
      assert.equal(readFileSync(join(cache, 'a_1_arm64.deb'), 'utf8'), 'cached a');
    } finally {
      rmSync(work, { recursive: true, force: true });
      if (across) rmSync(rootParent, { recursive: true, force: true });
    }
  });
}

test('the cache keeps each package at its highest version, per architecture, by dpkg --compare-versions', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-debs-'));
  try {
    const files = [
      'foo_1.0-1_arm64.deb',
      'foo_1%3a0.9_arm64.deb', // the epoch makes it the highest
      'foo_1.0~rc1-1_arm64.deb',
      'foo_1.0-1_armhf.deb',
      'bar_2.10_all.deb',
      'bar_2.9_all.deb', // lower: 9 < 10 as numbers, not as strings
      'lock',
    ];
    for (const f of files) writeFileSync(join(dir, f), f);
    mkdirSync(join(dir, 'partial'));
    writeFileSync(join(dir, 'partial', 'baz_1_arm64.deb'), 'half');
    const { removed } = await pruneDebCache(dir);
    assert.deepEqual(readdirSync(dir).sort(), ['bar_2.10_all.deb', 'foo_1%3a0.9_arm64.deb', 'foo_1.0-1_armhf.deb', 'lock']);
    assert.deepEqual(removed.sort(), ['bar_2.9_all.deb', 'foo_1.0-1_arm64.deb', 'foo_1.0~rc1-1_arm64.deb']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bound into a root, the cache is its archive directory, partial/ owned as the root\'s own; unbound, the root\'s directory is back untouched', async () => {
  const work = mkdtempSync(join(tmpdir(), 'syncpi-debs-'));
  try {
    const root = join(work, 'root');
    const cache = join(work, 'cache');
    const archives = join(root, 'var/cache/apt/archives');
    mkdirSync(join(archives, 'partial'), { recursive: true, mode: 0o700 });
    chownSync(join(archives, 'partial'), 42, 0);
    writeFileSync(join(archives, 'own.deb'), 'the root\'s');
    mkdirSync(cache);
    writeFileSync(join(cache, 'cached_1_all.deb'), 'cached');
    await withCleanup(async (scope) => {
      await bindDebCache(scope, root, cache);
      assert.deepEqual(readdirSync(archives).sort(), ['cached_1_all.deb', 'partial']);
      const p = statSync(join(archives, 'partial'));
      assert.deepEqual([p.uid, p.gid, p.mode & 0o777], [42, 0, 0o700]);
      writeFileSync(join(archives, 'fetched_2_all.deb'), 'fetched');
    });
    assert.deepEqual(readdirSync(archives).sort(), ['own.deb', 'partial']);
    assert.ok(readdirSync(cache).includes('fetched_2_all.deb'), 'what apt fetched stays in the cache');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
