/**
 * The rootfs target itself: a foreign-architecture (arm64) chroot through qemu-user binfmt, and
 * cleanup of the chroot's mounts and policy-rc.d when the process is interrupted with Ctrl-C.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { applyToRootfs, verifyRootfs } from '../../src/targets/rootfs.js';
import { hostArch, withChroot } from '../../src/targets/chroot.js';
import type { Reporter } from '../../src/util/report.js';
import { AMD64_SPEC, ARM64_SPEC, freshRootfs, removeRootfs } from '../helpers/converger-rootfs.js';
import { emptyPlan, file } from '../helpers/converger-plan.js';

const quiet: Reporter = { json: true, step: (_n, fn) => fn(() => undefined), info() {}, warn() {}, result() {} };

function mountsUnder(root: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === root || m.startsWith(`${root}/`));
}

async function forceCleanup(root: string): Promise<string[]> {
  const left = mountsUnder(root);
  for (const m of [...left].reverse()) await execa('umount', ['-l', m], { reject: false });
  removeRootfs(root);
  return left;
}

describe('arm64 rootfs through qemu-user', () => {
  let root = '';
  before(async () => {
    root = await freshRootfs(ARM64_SPEC);
  });
  after(async () => {
    if (root) assert.deepEqual(await forceCleanup(root), [], 'no mount left behind');
  });

  test('programs run as aarch64; a plan applies, verifies and is idempotent', async () => {
    const machine = await withChroot(root, { arch: 'arm64' }, async (t) => (await t.exec(['uname', '-m'])).stdout.trim());
    assert.equal(machine, 'aarch64');
    const plan = emptyPlan({
      users: [{ name: 'syncd', system: true, home: '/var/lib/syncd', shell: '/usr/sbin/nologin', groups: [], feature: 'sync' }],
      dirs: [{ path: '/srv/drive', mode: '0750', owner: 'syncd', group: 'syncd', feature: 'drive' }],
      files: [file('/etc/syncpi/arm.conf', 'arch = arm64\n', { mode: '0640', group: 'syncd' })],
      checks: [
        { kind: 'file', path: '/etc/syncpi/arm.conf', mode: '0640', owner: 'root', description: 'conf' },
        { kind: 'command', argv: ['id', 'syncd'], expectExit: 0, liveOnly: false, description: 'user' },
      ],
    });
    const t0 = Date.now();
    const r = await applyToRootfs(root, plan, { arch: 'arm64', reporter: quiet });
    const ms = Date.now() - t0;
    assert.deepEqual(r.changes.map((c) => `${c.kind} ${c.target} ${c.action}`), [
      'user syncd created',
      'dir /srv/drive created',
      'dir /etc/syncpi created',
      'file /etc/syncpi/arm.conf created',
    ]);
    assert.equal(readFileSync(join(root, 'etc/syncpi/arm.conf'), 'utf8'), 'arch = arm64\n');
    assert.equal((await applyToRootfs(root, plan, { arch: 'arm64', reporter: quiet })).counts.changes, 0);
    const v = await verifyRootfs(root, plan, { arch: 'arm64', reporter: quiet });
    assert.deepEqual(v.map((x) => x.status), ['pass', 'pass']);
    assert.ok(!existsSync(join(root, 'usr/sbin/policy-rc.d')));
    process.stderr.write(`# arm64 chroot apply: ${ms} ms\n`);
  });

  // on an arm64 machine nothing is emulated: its programs run on its own core, whatever that has
  test('programs run on the Pi 4\'s core, without the pointer authentication qemu\'s default emulates slowly', { skip: hostArch() === 'arm64' && 'arm64 programs run natively here' }, async () => {
    // qemu-user answers /proc/self/auxv with the emulated CPU's: AT_HWCAP (16) holds its features
    const hwcap = (out: string): bigint => {
      const words = out.split(/\s+/).filter(Boolean);
      for (let i = 0; i + 1 < words.length; i += 2) if (BigInt(`0x${words[i]}`) === 16n) return BigInt(`0x${words[i + 1]}`);
      throw new Error(`no AT_HWCAP in ${out}`);
    };
    const od = ['/usr/bin/od', '-An', '-tx8', '-v', '/proc/self/auxv'];
    const seen = await withChroot(root, { arch: 'arm64' }, async (t) => ({
      exec: hwcap((await t.exec(od)).stdout),
      // a script's (the converger's, on this machine's shell) own start of a target program
      script: hwcap((await t.runScript(`exec ${od.join(' ')}`)).stdout),
    }));
    const PACA = 1n << 30n;
    const PACG = 1n << 31n;
    const ASIMD = 1n << 1n;
    const CRC32 = 1n << 7n;
    for (const [how, caps] of Object.entries(seen)) {
      assert.equal(caps & (PACA | PACG), 0n, `${how}: no pointer authentication (HWCAP 0x${caps.toString(16)})`);
      assert.equal(caps & (ASIMD | CRC32), ASIMD | CRC32, `${how}: an ARMv8.0 core with CRC32, as the Pi's (HWCAP 0x${caps.toString(16)})`);
    }
  });
});

describe('chroot cleanup on Ctrl-C', () => {
  let root = '';
  let work = '';
  before(async () => {
    root = await freshRootfs(AMD64_SPEC);
    work = mkdtempSync(join(tmpdir(), 'syncpi-chroot-sigint-'));
  });
  after(async () => {
    rmSync(work, { recursive: true, force: true });
    if (root) assert.deepEqual(await forceCleanup(root), [], 'no mount left behind');
  });

  test('SIGINT while inside the chroot unmounts everything and restores resolv.conf and policy-rc.d', async () => {
    const resolvBefore = existsSync(join(root, 'etc/resolv.conf')) ? readFileSync(join(root, 'etc/resolv.conf')) : null;
    const script = join(work, 'hold.mts');
    writeFileSync(
      script,
      `import { withChroot } from ${JSON.stringify(resolve('src/targets/chroot.ts'))};\n` +
        `await withChroot(${JSON.stringify(root)}, { arch: 'amd64' }, async () => {\n` +
        `  process.stdout.write('READY\\n');\n` +
        `  await new Promise((r) => setTimeout(r, 60_000));\n` +
        `});\n`,
    );
    const child = execa('node', ['--import', 'tsx', script], { reject: false, cwd: resolve('.') });
    try {
      await new Promise<void>((res, rej) => {
        const timer = setTimeout(() => rej(new Error('child never got inside the chroot')), 30_000);
        child.stdout?.on('data', (d: Buffer) => {
          if (d.toString().includes('READY')) {
            clearTimeout(timer);
            res();
          }
        });
        void child.then(() => rej(new Error('child exited early')));
      });
      assert.ok(mountsUnder(root).length >= 4, 'dev, dev/pts, proc, sys mounted while inside');
      assert.ok(existsSync(join(root, 'usr/sbin/policy-rc.d')));
      child.kill('SIGINT');
      const r = await child;
      assert.equal(r.exitCode, 130, 'an interruption, not a success');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    assert.deepEqual(mountsUnder(root), []);
    assert.ok(!existsSync(join(root, 'usr/sbin/policy-rc.d')));
    const resolvAfter = existsSync(join(root, 'etc/resolv.conf')) ? readFileSync(join(root, 'etc/resolv.conf')) : null;
    assert.deepEqual(resolvAfter, resolvBefore);
  });
});
