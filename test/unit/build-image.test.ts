/** Pure parts of the image pipeline: mirror discovery, layer keys, PARTUUID rewriting. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostMirror, parseDeb822, parseOneLine } from '../../src/image/mirror.js';
import { baseLayerKey, LAYER_FORMAT, layerPaths, nearestPackagesLayer, packageLists, packagesLayerKey, type LayerMeta, type PackageLists } from '../../src/image/cache.js';
import { fixPartitionRefs } from '../../src/image/layout.js';
import { diskIdFor } from '../../src/image/build.js';
import { recipeVersion } from '../../src/image/recipe.js';
import { UserError } from '../../src/util/errors.js';

test('deb822 sources: the archive mirror, not security; disabled stanzas ignored', () => {
  const text = [
    'Types: deb',
    'URIs: http://mirror.invalid/debian-security',
    'Suites: trixie-security',
    'Components: main',
    '',
    'Types: deb-src deb',
    'URIs: http://mirror.invalid/debian/',
    'Suites: trixie trixie-updates',
    'Components: main',
    '',
    'Enabled: no',
    'Types: deb',
    'URIs: http://other.invalid/debian',
    'Suites: trixie',
  ].join('\n');
  const s = parseDeb822(text);
  assert.equal(s.length, 2);
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-apt-'));
  try {
    mkdirSync(join(dir, 'sources.list.d'));
    writeFileSync(join(dir, 'sources.list.d', 'debian.sources'), text);
    assert.equal(hostMirror(dir), 'http://mirror.invalid/debian');
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('one-line sources.list with options; no sources at all is a user error', () => {
  assert.deepEqual(parseOneLine('# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian bookworm main contrib\n'), [
    { uri: 'http://m.invalid/debian', suites: ['bookworm'], components: ['main', 'contrib'] },
  ]);
  const empty = mkdtempSync(join(tmpdir(), 'syncpi-apt-'));
  try {
    assert.throws(() => hostMirror(empty), (e: unknown) => e instanceof UserError && /base\.mirror/.test(e.message));
  } finally {
    rmSync(empty, { recursive: true });
  }
});

test('layer keys: the base by suite, arch, mirror and recipe; a packages layer by its parent and lists, in any order', () => {
  const b = (over: Partial<Parameters<typeof baseLayerKey>[0]> = {}) => baseLayerKey({ suite: 'trixie', arch: 'arm64', mirror: 'http://m.invalid/debian', recipeVersion: 'r1', ...over });
  assert.equal(b(), b());
  for (const over of [{ suite: 'forky' }, { arch: 'armhf' }, { mirror: 'http://n.invalid/debian' }, { recipeVersion: 'r2' }]) assert.notEqual(b(), b(over), JSON.stringify(over));
  const k = (install: string[], over: { parent?: string; purge?: string[]; keep?: string[] } = {}) =>
    packagesLayerKey({ parent: over.parent ?? b(), packages: { install, purge: over.purge ?? [], keep: over.keep ?? [] } });
  assert.equal(k(['a', 'b']), k(['b', 'a', 'a']));
  assert.notEqual(k(['a']), k(['a', 'b']));
  assert.notEqual(k(['a']), k(['a'], { parent: b({ recipeVersion: 'r2' }) }), 'a new base is a new packages layer');
  assert.notEqual(k(['a']), k(['a'], { purge: ['x*'] }));
  assert.notEqual(k(['a'], { purge: ['x*'] }), k(['a'], { purge: ['x*'], keep: ['xa'] }), 'a kept package changes what the purge leaves');
  assert.notEqual(k([]), b(), 'the two kinds never share a key');
  assert.match(recipeVersion(), /^[0-9a-f]{16}$/);
});

test('a new packages layer is built on the cached one of its parent with the most of its install list, the same purge and keep', async () => {
  const cache = mkdtempSync(join(tmpdir(), 'syncpi-layers-'));
  const saved = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = cache;
  try {
    const store = (key: string, parent: string, lists: PackageLists | undefined, format: number | undefined = LAYER_FORMAT) => {
      const p = layerPaths(key);
      writeFileSync(p.img, '');
      const meta: LayerMeta = { key, created: '', base: {}, parent, buildMs: 0, ...(format ? { format } : {}), ...(lists ? { lists: packageLists(lists) } : {}) };
      writeFileSync(p.meta, JSON.stringify(meta));
    };
    const l = (install: string[], purge: string[] = ['x*'], keep: string[] = []) => ({ install, purge, keep });
    store('small', 'base1', l(['rsync']));
    store('most', 'base1', l(['syncthing', 'rsync']));
    store('superset', 'base1', l(['rsync', 'syncthing', 'jq', 'tree']));
    store('other-purge', 'base1', l(['rsync', 'syncthing', 'jq'], ['y*']));
    store('other-keep', 'base1', l(['rsync', 'syncthing', 'jq'], ['x*'], ['xa']));
    store('other-parent', 'base2', l(['rsync', 'syncthing', 'jq']));
    store('old-format', 'base1', l(['rsync', 'syncthing', 'jq']), 1);
    store('no-lists', 'base1', undefined);
    const want = l(['jq', 'syncthing', 'rsync', 'rsync']);
    assert.equal((await nearestPackagesLayer('base1', want))?.key, 'most');
    assert.equal((await nearestPackagesLayer('base1', l(['rsync'])))?.key, 'small');
    assert.equal(await nearestPackagesLayer('base1', l(['tree'])), undefined, 'nothing it could build on');
    assert.equal(await nearestPackagesLayer('base3', want), undefined);
    // a layer whose image is gone is no layer
    rmSync(layerPaths('most').img);
    assert.equal((await nearestPackagesLayer('base1', want))?.key, 'small');
  } finally {
    if (saved === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved;
    rmSync(cache, { recursive: true, force: true });
  }
});

test('disk id: stable per config, different across configs', () => {
  const p = { name: 'a', configHash: 'h1' } as Parameters<typeof diskIdFor>[0];
  assert.equal(diskIdFor(p), diskIdFor({ ...p }));
  assert.notEqual(diskIdFor(p), diskIdFor({ ...p, configHash: 'h2' }));
  assert.match(diskIdFor(p), /^[0-9a-f]{8}$/);
});

test('PARTUUID references: cmdline.txt, fstab and raspi-firmware follow the disk id', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-refs-'));
  try {
    const root = join(dir, 'root');
    const boot = join(root, 'boot/firmware');
    mkdirSync(join(root, 'etc/default'), { recursive: true });
    mkdirSync(boot, { recursive: true });
    writeFileSync(join(boot, 'cmdline.txt'), 'console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=yes rootwait\n');
    writeFileSync(join(root, 'etc/fstab'), 'proc /proc proc defaults 0 0\nPARTUUID=1234abcd-01  /boot/firmware  vfat    defaults          0       2\nPARTUUID=1234abcd-02  /               ext4    defaults,noatime  0       1\n', { mode: 0o644 });
    writeFileSync(join(root, 'etc/default/raspi-firmware'), '#ROOTPART=/dev/mmcblk0p2\nCMA=64M\n');
    const changed = await fixPartitionRefs(root, boot, 'cafe0042');
    assert.equal(changed.length, 3);
    assert.equal(readFileSync(join(boot, 'cmdline.txt'), 'utf8'), 'console=serial0,115200 console=tty1 root=PARTUUID=cafe0042-02 rootfstype=ext4 fsck.repair=yes rootwait\n');
    const fstab = readFileSync(join(root, 'etc/fstab'), 'utf8');
    assert.match(fstab, /^proc \/proc proc defaults 0 0$/m);
    assert.match(fstab, /^PARTUUID=cafe0042-01\t\/boot\/firmware\tvfat\tdefaults\t0\t2$/m);
    assert.match(fstab, /^PARTUUID=cafe0042-02\t\/\text4\tdefaults,noatime\t0\t1$/m);
    assert.doesNotMatch(fstab, /1234abcd/);
    assert.equal(statSync(join(root, 'etc/fstab')).mode & 0o777, 0o644);
    assert.equal(readFileSync(join(root, 'etc/default/raspi-firmware'), 'utf8'), 'ROOTPART=PARTUUID=cafe0042-02\nCMA=64M\n');
    // idempotent
    assert.deepEqual(await fixPartitionRefs(root, boot, 'cafe0042'), []);
  } finally {
    rmSync(dir, { recursive: true });
  }
});
