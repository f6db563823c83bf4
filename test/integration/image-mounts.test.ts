/**
 * An image's file system, mounted by a build, is really released when the build unmounts it,
 * even where another mount namespace was started meanwhile (a container starting during the
 * build): otherwise the shrink's e2fsck refuses the "still mounted" file system.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountDev, tempMountpoint } from '../../src/image/loop.js';
import { withCleanup } from '../../src/util/cleanup.js';

test('a mount namespace started while an image is mounted does not keep it mounted after the build unmounts it', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-mounts-'));
  const img = join(dir, 'fs.img');
  execFileSync('truncate', ['-s', '64M', img]);
  execFileSync('mkfs.ext4', ['-q', '-F', img]);
  const dev = execFileSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).trim();
  // the way systemd-nspawn starts a container: everything it copies becomes a slave
  let other: ReturnType<typeof spawn> | undefined;
  try {
    await withCleanup(async (scope) => {
      const mountpoint = await tempMountpoint(scope);
      await mountDev(scope, dev, mountpoint, 'mount:fs');
      other = spawn('unshare', ['-m', '--propagation', 'slave', 'sleep', '120'], { stdio: 'ignore' });
      const copied = () => readFileSync(`/proc/${other!.pid}/mountinfo`, 'utf8').includes(` ${mountpoint} `);
      for (let i = 0; i < 50 && !copied(); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(copied(), 'the other namespace has its copy of the mount');
      // as a build does before it shrinks: the file system unmounted, its mount point still there
      await scope.release('mount:fs');
      assert.ok(!copied(), 'the unmount reached the other namespace');
      const fsck = spawnSync('e2fsck', ['-fy', dev], { encoding: 'utf8' });
      assert.equal(fsck.status, 0, `e2fsck on the released device: ${fsck.stdout}${fsck.stderr}`);
    });
  } finally {
    if (other?.pid) process.kill(other.pid, 'SIGKILL');
    spawnSync('losetup', ['-d', dev]);
    rmSync(dir, { recursive: true, force: true });
  }
});
