/**
 * The native converger toolset's refusals (src/targets/native-tools.ts): it is offered only where
 * its paths are free and really inside the root. The run itself, and that it leaves the same root
 * as the emulated tools, is in test/integration/build.test.ts (an arm64 root).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountNativeTools, nativeKit, parseLdd } from '../../src/targets/native-tools.js';
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
