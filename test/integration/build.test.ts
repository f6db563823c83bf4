/**
 * The image pipeline end to end on the Debian base (the booting of such images is in
 * image-test, raspi3b-boot and e2e-sync): layout, the Plan's files, packages, PARTUUID
 * consistency, the two layers and the .deb cache, bmap fidelity, the stock-image path and
 * interruption. The base layer is the machine's one cache, shared with the booted-image tests;
 * this file's own packages layer is rebuilt every run.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { buildImage, planLayerKeys, type BuildResult } from '../../src/image/build.js';
import { installedPackages } from '../../src/image/finish.js';
import { cacheDir, cacheRoot, layerPaths, readLayer } from '../../src/image/cache.js';
import { debCacheDir } from '../../src/image/deb-cache.js';
import { attachImage, mountDev, tempMountpoint } from '../../src/image/loop.js';
import { withCleanup } from '../../src/util/cleanup.js';
import { withChroot } from '../../src/targets/chroot.js';
import { BOOTSTRAP_TOOLSET, NATIVE_DIR } from '../../src/targets/native-tools.js';
import { BUILD_DPKG_CFG } from '../../src/image/apply.js';
import { lexists } from '../../src/util/fs.js';
import { applyToRootfs } from '../../src/targets/rootfs.js';
import { UserError } from '../../src/util/errors.js';
import { MODEL_IDS } from '../../src/hardware/models.js';
import { RecordingReporter, enabledHostKeyGenerators, enabledUnits, inspectImage, loopsUnder, mountsMatching, requireTools, testPlan, treeOf } from './build-support.js';

const work = mkdtempSync(join(tmpdir(), 'syncpi-build-test-'));
let first: BuildResult;
let firstCmdline = '';

/** Remove a cached layer of this file's own: its image and its record. */
const dropLayer = (key: string) => {
  for (const p of Object.values(layerPaths(key))) rmSync(p, { force: true });
};

before(async () => {
  requireTools();
  // the cold path of this file's own packages layer runs every time; the base under it is shared
  const keys = await planLayerKeys(testPlan(), new RecordingReporter());
  dropLayer(keys.packages);
});
after(() => rmSync(work, { recursive: true, force: true }));

const sha256 = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const modeOwner = (p: string) => {
  const st = statSync(p);
  return { mode: (st.mode & 0o7777).toString(8).padStart(4, '0'), uid: st.uid, gid: st.gid };
};
const idOf = (root: string, db: 'passwd' | 'group', name: string): number => {
  const line = readFileSync(join(root, 'etc', db), 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  assert.ok(line, `${name} in /etc/${db}`);
  return Number(line.split(':')[2]);
};

function sfdiskJson(img: string) {
  return JSON.parse(execFileSync('sfdisk', ['--json', img], { encoding: 'utf8' })).partitiontable as {
    label: string;
    id: string;
    partitions: Array<{ start: number; size: number; type: string }>;
  };
}

function assertPartuuidsConsistent(root: string, boot: string, diskId: string): void {
  const cmdline = readFileSync(join(boot, 'cmdline.txt'), 'utf8');
  assert.match(cmdline, new RegExp(`(^|\\s)root=PARTUUID=${diskId}-02(\\s|$)`), 'cmdline.txt root=');
  assert.equal(cmdline.trim().split('\n').length, 1, 'cmdline.txt is one line');
  const fstab = readFileSync(join(root, 'etc/fstab'), 'utf8');
  assert.match(fstab, new RegExp(`^PARTUUID=${diskId}-02\\s+/\\s+ext4`, 'm'));
  assert.match(fstab, new RegExp(`^PARTUUID=${diskId}-01\\s+/boot/firmware\\s+vfat`, 'm'));
  assert.doesNotMatch(fstab + cmdline, new RegExp(`PARTUUID=(?!${diskId})[0-9a-f]{8}-`), 'no other disk id referenced');
}

test('cold build: RPi OS layout, plan applied, packages, consistent PARTUUIDs, clean exports', { timeout: 90 * 60_000 }, async () => {
  const reporter = new RecordingReporter();
  const out = join(work, 'out');
  first = await buildImage({ plan: testPlan(), outDir: out, reporter, xz: true });
  assert.equal(first.layer.reused, false, 'this file\'s packages layer is built');
  const layer = await readLayer(first.layer.key);
  assert.equal(layer?.parent, first.layer.base?.key, 'on the Debian base layer');
  assert.deepEqual(layer?.installed, ['jq'], 'the packages layer installed what the base lacks');
  // the .debs it was installed from stay for the next build, in the cache, not in the image
  const cached = readdirSync(cacheDir('debs')).flatMap((d) => readdirSync(join(cacheDir('debs'), d)));
  assert.ok(cached.some((f) => /^jq_.*_arm64\.deb$/.test(f)) && cached.some((f) => /^libc6_.*_arm64\.deb$/.test(f)), 'jq of the packages layer and libc6 of the base in the .deb cache');
  const names = readdirSync(out).sort();
  assert.deepEqual(names, ['appliance.bmap', 'appliance.img', 'appliance.img.xz', 'appliance.manifest.json', 'appliance.sha256']);
  // the image holds the appliance's secrets: owner only, whatever the umask
  for (const n of ['appliance.img', 'appliance.img.xz']) assert.equal(modeOwner(join(out, n)).mode, '0600', n);
  for (const n of ['appliance.bmap', 'appliance.manifest.json', 'appliance.sha256']) assert.equal(Number.parseInt(modeOwner(join(out, n)).mode, 8) & 0o002, 0, n);

  const table = sfdiskJson(first.img);
  assert.equal(table.label, 'dos');
  assert.equal(table.id.replace(/^0x/, ''), first.diskId);
  assert.equal(table.partitions.length, 2);
  assert.equal(table.partitions[0]!.start, 8192);
  assert.equal(table.partitions[0]!.type, 'c');
  assert.equal(table.partitions[1]!.type, '83');
  const last = table.partitions[1]!;
  assert.equal(statSync(first.img).size, (last.start + last.size) * 512, 'file ends where the root partition ends');
  // sparse: free blocks were discarded
  assert.ok(statSync(first.img).blocks * 512 < statSync(first.img).size, 'image is sparse');

  await inspectImage(first.img, (root, boot, dev) => {
    assert.equal(execFileSync('blkid', ['-o', 'value', '-s', 'LABEL', `${dev}p1`], { encoding: 'utf8' }).trim(), 'bootfs');
    assert.equal(execFileSync('blkid', ['-o', 'value', '-s', 'TYPE', `${dev}p1`], { encoding: 'utf8' }).trim(), 'vfat');
    assert.equal(execFileSync('blkid', ['-o', 'value', '-s', 'LABEL', `${dev}p2`], { encoding: 'utf8' }).trim(), 'rootfs');
    assert.equal(execFileSync('blkid', ['-o', 'value', '-s', 'TYPE', `${dev}p2`], { encoding: 'utf8' }).trim(), 'ext4');
    assertPartuuidsConsistent(root, boot, first.diskId);
    firstCmdline = readFileSync(join(boot, 'cmdline.txt'), 'utf8');

    const syncer = idOf(root, 'passwd', 'syncer');
    const syncerGroup = idOf(root, 'group', 'syncer');
    assert.deepEqual(modeOwner(join(root, 'etc/syncpi/panel.conf')), { mode: '0640', uid: 0, gid: syncerGroup });
    assert.equal(readFileSync(join(root, 'etc/syncpi/panel.conf'), 'utf8'), 'host=pi-test\n');
    assert.deepEqual(modeOwner(join(root, 'usr/local/bin/syncpi-hello')), { mode: '0755', uid: 0, gid: 0 });
    assert.deepEqual(modeOwner(join(root, 'var/lib/syncer/data')), { mode: '0750', uid: syncer, gid: syncerGroup });
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'pi-test\n');
    assert.match(readFileSync(join(root, 'etc/sysctl.d/90-syncpi.conf'), 'utf8'), /^vm\.swappiness = 10$/m);
    assert.equal(readFileSync(join(root, 'etc/systemd/system/apt-daily.timer'), 'utf8'), '', 'masked unit links to /dev/null');

    // per-machine state removed
    assert.equal(readFileSync(join(root, 'etc/machine-id'), 'utf8'), '');
    assert.deepEqual(readdirSync(join(root, 'etc/ssh')).filter((f) => f.startsWith('ssh_host_')), []);
    // the build adds no host key generator of its own beside the base's and the Plan's
    // (this hand-made Plan has none, so trixie's sshd-keygen.service is the one)
    const generators = enabledHostKeyGenerators(root);
    assert.equal(generators.length, 1, `one SSH host key generator enabled, found: ${generators.join(' ')}`);
    assert.ok(enabledUnits(root).has('systemd-networkd.service'), 'without NetworkManager, networkd owns the wired network');
    assert.deepEqual(readdirSync(join(root, 'var/lib/apt/lists')).filter((f) => f !== 'partial' && f !== 'lock'), []);
    assert.deepEqual(readdirSync(join(root, 'var/cache/apt/archives')).filter((f) => f.endsWith('.deb')), []);
    // what the bootstrap and the packages layer use while they build stays out of the appliance:
    // dpkg without syncs, apt's build options, this machine's tools and libraries
    for (const p of [BUILD_DPKG_CFG, 'etc/apt/apt.conf.d/99mmdebstrap', BOOTSTRAP_TOOLSET.dir, NATIVE_DIR, 'usr/lib/x86_64-linux-gnu', 'lib64', 'usr/lib64']) {
      assert.ok(!lexists(join(root, p)), `${p} is not in the image`);
    }
    assert.doesNotMatch(readFileSync(join(root, 'etc/dpkg/dpkg.cfg.d/99mmdebstrap'), 'utf8'), /unsafe/, 'dpkg on the Pi syncs what it writes');
  });

  const manifest = JSON.parse(readFileSync(first.manifest, 'utf8'));
  const pkgs = new Map<string, string>(manifest.packages.map((p: { name: string; version: string }) => [p.name, p.version]));
  for (const p of ['jq', 'syncthing', 'openssh-server', 'nftables', 'sudo', 'systemd']) assert.ok(pkgs.get(p), `${p} installed`);
  assert.ok(pkgs.get('linux-image-arm64') && pkgs.get('raspi-firmware'), 'kernel and firmware from the base layer');
  assert.equal(manifest.configHash, 'test-pi-test');
  assert.equal(manifest.base.kind, 'debian');
  assert.equal(manifest.image.sha256, first.imageSha256);
  // the base's boot partition decides the models (src/hardware/models.ts): every model is either
  // booted or excluded with its reason
  assert.ok(manifest.models.boots.includes('pi3b') && manifest.models.boots.includes('pi4b'), manifest.models.boots.join(' '));
  assert.deepEqual([...manifest.models.boots, ...manifest.models.excluded.map((e: { model: string }) => e.model)].sort(), [...MODEL_IDS].sort());
  assert.ok(manifest.models.excluded.every((e: { reason: string }) => /no device tree|ARMv[67]|RP1/.test(e.reason)), JSON.stringify(manifest.models.excluded));
  assert.equal(manifest.models.targets, undefined, 'the plan names no models');
  assert.equal(readFileSync(first.sha256, 'utf8').split('\n')[0], `${sha256(first.img)}  appliance.img`);
  assert.equal(first.imageSha256, sha256(first.img));
  // the .xz unpacks to the very same image
  const unpacked = createHash('sha256').update(execFileSync('xz', ['-dc', first.xz!], { maxBuffer: 4 << 30 })).digest('hex');
  assert.equal(unpacked, first.imageSha256);
  // a loop device still mounted cannot be detached, so none left under work means no mount either
  assert.deepEqual(loopsUnder(work), []);
});

test('config-only rebuild reuses the packages layer and says so (its time is a benchmark figure: bench/build.mjs)', { timeout: 10 * 60_000 }, async () => {
  assert.ok(first, 'needs the cold build');
  const reporter = new RecordingReporter();
  const out = join(work, 'out2');
  const r = await buildImage({ plan: testPlan({ hostname: 'pi-second', kernelParams: { 'usb-storage.quirks': '174c:55aa:u' } }), outDir: out, reporter });
  assert.equal(r.layer.reused, true);
  // the converger's kernel-cmdline step wrote the parameter on the card's cmdline.txt, one line, nothing else changed
  await inspectImage(r.img, (_root, boot) => {
    const line = readFileSync(join(boot, 'cmdline.txt'), 'utf8');
    assert.equal(line.split('\n').length, 2, 'one line');
    assert.match(line, / usb-storage\.quirks=174c:55aa:u\b/);
    assert.equal(line.replace(' usb-storage.quirks=174c:55aa:u', ''), firstCmdline.replaceAll(first.diskId, r.diskId));
  });
  assert.equal(r.layer.key, first.layer.key);
  assert.ok(reporter.infos.some((m) => m.startsWith(`reusing cached packages layer ${first.layer.key} `)), 'the build says it reused the layer');
  assert.notEqual(r.diskId, first.diskId, 'another config, another disk id');
  await inspectImage(r.img, (root, boot) => {
    assertPartuuidsConsistent(root, boot, r.diskId);
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'pi-second\n');
    assert.equal(readFileSync(join(root, 'etc/syncpi/panel.conf'), 'utf8'), 'host=pi-second\n');
  });
});

test('one more package: a packages layer built on the cached one, never the base; NetworkManager, once in, owns the network alone', { timeout: 40 * 60_000 }, async () => {
  assert.ok(first?.layer.base, 'needs the cold build');
  const baseImg = layerPaths(first.layer.base.key).img;
  const baseWritten = statSync(baseImg).mtimeMs;
  const plan = testPlan({ hostname: 'pi-more', packages: { install: ['jq', 'network-manager'], purge: [], keep: [] } });
  const keys = await planLayerKeys(plan, new RecordingReporter());
  dropLayer(keys.packages);
  const reporter = new RecordingReporter();
  const r = await buildImage({ plan, outDir: join(work, 'more'), reporter });
  try {
    assert.deepEqual(r.layer.base, { key: first.layer.base.key, reused: true });
    assert.equal(r.layer.reused, false);
    assert.notEqual(r.layer.key, first.layer.key);
    assert.equal(reporter.steps.some((s) => s.name.startsWith('bootstrap')), false, 'no bootstrap');
    assert.equal(statSync(baseImg).mtimeMs, baseWritten, 'the base layer is only read');
    const layer = await readLayer(r.layer.key);
    assert.equal(layer?.builtOn, first.layer.key, 'built on the cached packages layer that has jq already');
    assert.ok(reporter.infos.some((m) => m.startsWith(`building on cached packages layer ${first.layer.key}: 1 of the 2 packages`)), reporter.infos.join('\n'));
    assert.ok(layer?.installed?.includes('network-manager') && layer.installed.includes('jq'), layer?.installed?.join(' '));
    await inspectImage(r.img, async (root) => {
      const units = enabledUnits(root);
      assert.ok(units.has('NetworkManager.service'), 'NetworkManager enabled');
      assert.equal(units.has('systemd-networkd.service'), false, 'networkd no longer enabled beside it');
      assert.ok((await installedPackages(root)).some((p) => p.name === 'network-manager'));
    });
    process.stderr.write(`one more package (network-manager): packages layer ${Math.round(r.layer.ms / 1000)} s, build ${Math.round(r.totalMs / 1000)} s\n`);
  } finally {
    dropLayer(r.layer.key);
  }
});

test('the converger runs on this machine\'s own tools in the arm64 root, and leaves exactly what the emulated run leaves', { timeout: 20 * 60_000 }, async () => {
  assert.ok(first, 'needs the cold build');
  const plan = testPlan({ hostname: 'pi-native' });
  const runs: Record<'native' | 'emulated', { tree: Map<string, string>; changes: string[]; ms: number; shell: string }> = {} as never;
  for (const mode of ['native', 'emulated'] as const) {
    const img = join(work, `tools-${mode}.img`);
    execFileSync('cp', ['--sparse=always', layerPaths(first.layer.key).img, img]);
    await withCleanup(async (scope) => {
      const dev = await attachImage(scope, img);
      const root = await tempMountpoint(scope);
      await mountDev(scope, dev.partition(2), root, 'mount:root');
      const shell = await withChroot(root, { arch: 'arm64', scope, nativeTools: mode === 'native' }, async (t) => {
        assert.equal(t.nativeTools, mode === 'native');
        return (await t.runScript('readlink /proc/$$/exe')).stdout.trim();
      });
      const t0 = Date.now();
      const report = await applyToRootfs(root, plan, { arch: 'arm64', reporter: new RecordingReporter(), scope, nativeTools: mode === 'native' });
      const ms = Date.now() - t0;
      runs[mode] = { tree: treeOf(root), changes: report.changes.map((c) => `${c.kind} ${c.target} ${c.action}`), ms, shell };
    });
    rmSync(img, { force: true });
  }
  assert.equal(runs.native.shell, `${NATIVE_DIR}/sh`, 'the script ran on the native shell');
  assert.notEqual(runs.emulated.shell, `${NATIVE_DIR}/sh`);
  assert.ok(runs.native.changes.length > 5, 'the plan changed things');
  assert.deepEqual(runs.native.changes, runs.emulated.changes, 'the same CHANGE records');
  const differ = [...new Set([...runs.native.tree.keys(), ...runs.emulated.tree.keys()])].filter((k) => runs.native.tree.get(k) !== runs.emulated.tree.get(k));
  assert.deepEqual(differ.map((k) => `${k}: native ${runs.native.tree.get(k)} / emulated ${runs.emulated.tree.get(k)}`), [], 'the same tree, entry for entry');
  assert.ok(!runs.native.tree.has(`${NATIVE_DIR}`) && !runs.native.tree.has('/lib64') && !runs.native.tree.has('/usr/lib/x86_64-linux-gnu'), 'nothing of the toolset stays in the root');
  process.stderr.write(`converger apply in the arm64 root: native tools ${runs.native.ms} ms, emulated ${runs.emulated.ms} ms\n`);
});

test('bmaptool copy with our .bmap reproduces the image byte for byte', { timeout: 5 * 60_000 }, () => {
  assert.ok(first, 'needs the cold build');
  const dest = join(work, 'copy.raw');
  // a fresh file: bmaptool writes only the mapped blocks, so the copy equals the image only if
  // every block left out really is a hole (zeros) in the image
  writeFileSync(dest, '');
  execFileSync('bmaptool', ['copy', '--bmap', first.bmap, first.img, dest], { stdio: 'pipe' });
  assert.equal(statSync(dest).size, statSync(first.img).size);
  assert.equal(sha256(dest), first.imageSha256);
  // and the bmap itself says what was checksummed
  const xml = readFileSync(first.bmap, 'utf8');
  assert.match(xml, /<ChecksumType> sha256 <\/ChecksumType>/);
  assert.equal(Number(/<MappedBlocksCount> (\d+) /.exec(xml)![1]) * 4096, first.mappedBytes);
  rmSync(dest);
});

test('a plan naming a model the image cannot boot fails before the apply, naming the model and why', { timeout: 10 * 60_000 }, async () => {
  assert.ok(first, 'needs the cold build (its layer)');
  const out = join(work, 'models');
  // a model the cold build's own boot partition excludes (the Pi 5 family: RP1), asked for beside one it boots
  const manifest = JSON.parse(readFileSync(first.manifest, 'utf8')) as { models: { excluded: Array<{ model: string; reason: string }> } };
  const excluded = manifest.models.excluded.find((e) => e.model === 'pi5');
  assert.ok(excluded, JSON.stringify(manifest.models.excluded));
  const r = buildImage({ plan: testPlan({ hostname: 'pi-models', models: ['pi4b', 'pi5'] }), outDir: out, reporter: new RecordingReporter() });
  await assert.rejects(r, (e: unknown) => e instanceof UserError && e.message.startsWith(`hardware.models: this image does not boot pi5 (${excluded.reason}); it boots `) && !/boot pi4b/.test(e.message));
  assert.equal(existsSync(join(out, 'appliance.img')), false);
  assert.deepEqual(loopsUnder(work), []);
});

test('stock image path: an RPi OS–shaped .img.xz is verified, cached, and built on', { timeout: 15 * 60_000 }, async (t) => {
  assert.ok(first, 'needs the cold build');
  // a Raspberry Pi OS–shaped image made from Debian packages: the cold build's own output
  const stock = join(work, 'raspios-lite-shaped.img.xz');
  execFileSync('cp', [first.xz!, stock]);
  const digest = sha256(stock);
  const reporter = new RecordingReporter();

  const wrong = testPlan({ base: { kind: 'image', arch: 'arm64', source: stock, sha256: '0'.repeat(64) } });
  await assert.rejects(buildImage({ plan: wrong, outDir: join(work, 'bad'), reporter }), (e: unknown) => e instanceof UserError && /does not match/.test(e.message));
  assert.equal(existsSync(join(work, 'bad', 'appliance.img')), false);

  const plan = testPlan({
    hostname: 'stock-pi',
    base: { kind: 'image', arch: 'arm64', source: stock, sha256: digest },
    packages: { install: [], purge: ['jq'], keep: [] },
  });
  // this run's stock image is new to the cache (its content, so its digest, differs per run): what
  // it adds there is removed again
  let layerKey: string | undefined;
  t.after(() => {
    rmSync(join(cacheDir('bases'), `${digest}.img`), { force: true });
    rmSync(debCacheDir({ kind: 'image', sha256: digest }), { recursive: true, force: true });
    if (layerKey) dropLayer(layerKey);
  });
  const r = await buildImage({ plan, outDir: join(work, 'stock'), reporter });
  layerKey = r.layer.key;
  assert.equal(r.layer.reused, false);
  await inspectImage(r.img, async (root, boot) => {
    assertPartuuidsConsistent(root, boot, r.diskId);
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'stock-pi\n');
    const names = new Set((await installedPackages(root)).map((p) => p.name));
    assert.equal(names.has('jq'), false, 'jq purged');
    assert.equal(names.has('syncthing'), true);
  });
  const manifest = JSON.parse(readFileSync(r.manifest, 'utf8'));
  assert.equal(manifest.base.kind, 'image');
  assert.equal(manifest.base.sha256, digest);
  assert.deepEqual(manifest.purged, ['jq']);
  // jq and the libraries only it needed (apt's autoremove): what stripping actually removed
  assert.ok(manifest.stripped.purged.includes('jq'), manifest.stripped.purged.join(' '));
  assert.ok(manifest.stripped.purged.every((n: string) => n === 'jq' || n.startsWith('lib')), manifest.stripped.purged.join(' '));
  assert.ok(manifest.stripped.freedBytes > 0, 'and the space it freed');
  assert.ok(reporter.infos.some((m) => /^stripping freed \d.*: jq\b/.test(m)), 'the build reports it');
  assert.deepEqual(loopsUnder(cacheRoot()), []);
});

/**
 * Run a build in its own process and Ctrl-C it once `ready` matches its JSON events; returns its
 * exit code, stderr and events, and what `probe` saw at that moment.
 */
async function interruptBuild<T>(name: string, opts: { noCache?: boolean; ready: RegExp; within: number; probe: (pid: number) => T }): Promise<{ code: number | null; stderr: string; events: string; seen: T; pid: number }> {
  const out = join(work, name);
  const planFile = join(work, `${name}-plan.json`);
  writeFileSync(planFile, JSON.stringify(testPlan({ hostname: `pi-${name}` })));
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'build-child.ts'), planFile, out, ...(opts.noCache ? ['--no-cache'] : [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  let buf = '';
  const seen = await new Promise<T>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`build never reached ${opts.ready}: ${stderr}`)), opts.within);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      if (opts.ready.test(buf)) {
        clearTimeout(timer);
        res(opts.probe(child.pid!));
      }
    });
    child.on('exit', () => {
      clearTimeout(timer);
      rej(new Error(`build ended before it could be interrupted: ${stderr}`));
    });
  });
  child.kill('SIGINT');
  return { code: await exit, stderr, events: buf, seen, pid: child.pid! };
}

test('an interrupted build leaves no loop device, mount or finished-looking file', { timeout: 10 * 60_000 }, async () => {
  assert.ok(first, 'needs the cold build (its layer makes this build reach the loop stage fast)');
  const out = join(work, 'killed');
  // interrupt once the image is attached and mounted, while the plan is being applied
  const r = await interruptBuild('killed', {
    ready: /"step-start","step":"apply plan/,
    within: 5 * 60_000,
    probe: () => ({ loops: loopsUnder(out), losetup: execFileSync('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' }).trim().replace(/\n/g, '; ') }),
  });
  assert.ok(r.seen.loops.length > 0, `the build had a loop device attached when interrupted (losetup: ${r.seen.losetup}; events: ${r.events.slice(-600)})`);
  assert.equal(r.code, 130, `exit code after SIGINT (stderr: ${r.stderr})`);
  assert.deepEqual(loopsUnder(out), [], 'no loop device left');
  // other builds may run on this machine: look only at this build's devices
  assert.deepEqual(mountsMatching(new RegExp(`^(${r.seen.loops.join('|')})p?\\d*\\s`)), [], 'no mount of its loop devices left');
  const left = existsSync(out) ? readdirSync(out) : [];
  assert.deepEqual(left.filter((f) => /\.(img|bmap|sha256|json|xz)$/.test(f) || f.includes('partial')), [], `files left: ${left.join(', ')}`);
});

/** Processes whose root or working directory lies under `dir`: what a chroot there still runs. */
function processesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    for (const link of ['root', 'cwd']) {
      try {
        const target = readlinkSync(`/proc/${pid}/${link}`);
        if (target === dir || target.startsWith(`${dir}/`)) found.push(`${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 120)}`);
      } catch {
        /* gone, or not ours to read */
      }
    }
  }
  return found;
}

test('a bootstrap interrupted while dpkg configures leaves no process, mount or work tree, and the cached base as it was', { timeout: 10 * 60_000 }, async () => {
  assert.ok(first, 'needs the cold build (the base layer it used is what must stay)');
  const base = layerPaths(first.layer.base!.key);
  const before = { img: statSync(base.img).mtimeMs, meta: readFileSync(base.meta, 'utf8') };
  // the bootstrap's tree is the work directory named by the base layer's key and the build's pid
  const workOf = (pid: number) => join(cacheDir('work'), `${first.layer.base!.key}-${pid}`);
  // --no-cache bootstraps anew; interrupted once dpkg has configured a few packages, that is
  // with mmdebstrap's workers, its chroot mounts and the native tools all in place
  const r = await interruptBuild('killed-bootstrap', {
    noCache: true,
    ready: /"step":"bootstrap Debian[^"]*","done":([5-9]|\d\d)/,
    within: 5 * 60_000,
    probe: (pid) => ({ mounts: mountsMatching(new RegExp(` ${workOf(pid)}/`)).length, processes: processesUnder(workOf(pid)).length }),
  });
  const tree = workOf(r.pid);
  assert.ok(r.seen.mounts >= 5 && r.seen.processes >= 1, `the bootstrap was running in its chroot with the native tools when interrupted (${JSON.stringify(r.seen)})`);
  assert.equal(r.code, 130, `exit code after SIGINT (stderr: ${r.stderr})`);
  assert.deepEqual(processesUnder(tree), [], 'no process left in the bootstrap\'s tree');
  assert.deepEqual(mountsMatching(new RegExp(` ${tree}/`)), [], 'no mount left under it');
  assert.equal(existsSync(tree), false, 'the tree is gone');
  assert.deepEqual({ img: statSync(base.img).mtimeMs, meta: readFileSync(base.meta, 'utf8') }, before, 'the cached base layer is untouched');
  assert.ok(!readdirSync(dirname(base.img)).some((f) => f.includes('.partial-')), 'no partial layer left');
});
