/**
 * What a killed tool leaves mounted is found and taken down (src/image/loop.ts): real tmpfs
 * mounts, nested, one with a space in its name, beside a directory that only shares a prefix.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountsBelow, unmountBelow } from '../../src/image/loop.js';

const mounted = (dir: string) => mountsBelow(readFileSync('/proc/self/mountinfo', 'utf8'), dir);

test('mountinfo: the mount points at and below a directory, deepest first, escapes undone', () => {
  const info = [
    '36 1 0:30 / /work/root rw - tmpfs t rw',
    '37 36 0:31 / /work/root/proc rw - proc proc rw',
    '38 37 0:32 / /work/root/proc/sys/fs/binfmt_misc rw - binfmt_misc b rw',
    '39 36 0:33 / /work/root/my\\040dir rw - tmpfs t rw',
    '40 1 0:34 / /work/root-other rw - tmpfs t rw',
    '41 1 0:35 / /work rw - tmpfs t rw',
  ].join('\n');
  assert.deepEqual(mountsBelow(info, '/work/root'), ['/work/root/proc/sys/fs/binfmt_misc', '/work/root/my dir', '/work/root/proc', '/work/root']);
  assert.deepEqual(mountsBelow(info, '/nowhere'), []);
});

test('unmountBelow takes down nested mounts and leaves a neighbour with the same prefix alone', async () => {
  const top = mkdtempSync(join(tmpdir(), 'syncpi-mounts-'));
  const dir = join(top, 'root');
  const neighbour = join(top, 'root-other');
  const mount = (at: string) => {
    mkdirSync(at, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'syncpi-test', at]);
  };
  try {
    mount(dir);
    mount(join(dir, 'proc'));
    mount(join(dir, 'my dir'));
    mount(join(dir, 'proc', 'inner'));
    mount(neighbour);
    assert.equal(mounted(dir).length, 4);
    await unmountBelow(dir);
    assert.deepEqual(mounted(dir), []);
    assert.deepEqual(mounted(neighbour), [neighbour]);
  } finally {
    for (const p of [...mounted(dir), ...mounted(neighbour)]) execFileSync('umount', ['-l', p]);
    rmSync(top, { recursive: true, force: true });
  }
});
