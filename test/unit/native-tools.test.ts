/**
 * The native converger toolset's refusals (src/targets/native-tools.ts): it is offered only where
 * its paths are free and really inside the root; where offered, its programs run from their own
 * loader and leave nothing behind. The run itself, and that it leaves the same root
 * as the emulated tools, is in test/integration/build.test.ts (an arm64 root).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BOOTSTRAP_TOOLSET, mountNativeTools, nativeKit, parseLdd, setInterpreter } from '../../src/targets/native-tools.js';
import { withCleanup } from '../../src/util/cleanup.js';

test('parseLdd reads the loader and the libraries from real ldd output', () => {
  const out = execFileSync('ldd', ['/bin/dash'], { encoding: 'utf8' });
  const p = parseLdd(out);
  assert.ok(p.interpreter?.startsWith('/'), out);
  assert.ok(p.libs.some((l) => /\/libc\.so\.6$/.test(l)), out);
  assert.ok(!p.libs.some((l) => l.includes('vdso')), 'the vDSO is no file');
});

test('this machine has one tidy kit: every tool, one loader, one library directory', async () => {
  const kit = await nativeKit();
  assert.ok(kit, 'the kit resolves on the build machine');
  assert.ok(kit.tools.has('sh') && kit.tools.has('grep') && !kit.tools.has('dpkg') && !kit.tools.has('systemctl') && !kit.tools.has('useradd'));
  assert.ok(kit.libs.every((l) => l.file.startsWith(`${kit.libDir}/`)));
});

test('no toolset in a root whose library directory is its own, or behind a link out of the root', async () => {
  const kit = (await nativeKit())!;
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-native-'));
  try {
    // a root that has this machine's library directory already (multiarch, or the same architecture)
    const own = join(dir, 'own');
    mkdirSync(join(own, kit.libDir), { recursive: true });
    mkdirSync(join(own, 'run'));
    assert.equal(await withCleanup((scope) => mountNativeTools(own, scope)), undefined);
    assert.ok(!existsSync(join(own, 'run/syncpi-native')), 'nothing made');

    // a hostile root: usr/lib and run lead out of it
    const outside = join(dir, 'outside');
    mkdirSync(join(outside, 'lib'), { recursive: true });
    const hostile = join(dir, 'hostile');
    mkdirSync(join(hostile, 'usr'), { recursive: true });
    symlinkSync(join(outside, 'lib'), join(hostile, 'usr/lib'));
    symlinkSync(outside, join(hostile, 'run'));
    assert.equal(await withCleanup((scope) => mountNativeTools(hostile, scope)), undefined);
    assert.deepEqual(execFileSync('find', [outside], { encoding: 'utf8' }).trim().split('\n').sort(), [outside, join(outside, 'lib')], 'nothing written outside the root');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('offered in a bare root, the tools run there on the loader beside them; /lib64 is never made, and nothing stays', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-native-'));
  try {
    // an empty root with the two parent directories an unpacked Debian root has
    mkdirSync(join(dir, 'usr/lib'), { recursive: true });
    mkdirSync(join(dir, 'run'));
    const before = execFileSync('find', [dir], { encoding: 'utf8' });
    for (const toolset of [undefined, BOOTSTRAP_TOOLSET]) {
      const out = await withCleanup(async (scope) => {
        const bin = await mountNativeTools(dir, scope, toolset);
        assert.ok(bin, 'offered');
        assert.ok(!existsSync(join(dir, 'lib64')), 'nothing at the loader\'s own path');
        // the root has no loader and no libc of its own: this runs only on the kit
        return execFileSync('chroot', [dir, `${bin}/sh`, '-c', `echo $((6 * 7)) | ${bin}/grep -c 42; ${bin}/ls /`], { encoding: 'utf8' });
      });
      assert.equal(out, '1\nrun\nusr\n');
    }
    assert.equal(execFileSync('find', [dir], { encoding: 'utf8' }), before, 'the root is as it was');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('setInterpreter rewrites an ELF program\'s loader path in place, and refuses what does not fit or is no ELF', () => {
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-native-'));
  try {
    const copy = join(dir, 'true');
    copyFileSync('/bin/true', copy);
    assert.equal(setInterpreter(copy, '/x/ld'), true);
    assert.match(execFileSync('readelf', ['-l', copy], { encoding: 'utf8' }), /Requesting program interpreter: \/x\/ld\]/);
    assert.equal(setInterpreter(copy, `/${'a'.repeat(200)}`), false, 'longer than the field');
    const script = join(dir, 'script');
    writeFileSync(script, '#!/bin/sh\n');
    assert.equal(setInterpreter(script, '/x/ld'), false);
    assert.deepEqual(readdirSync(dir).sort(), ['script', 'true']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
