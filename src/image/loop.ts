/**
 * Loop devices and mounts for an image, each registered with a cleanup scope the moment it is
 * acquired, so success, failure and Ctrl-C all release them in reverse order.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, realpath, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CleanupScope } from '../util/cleanup.js';
import { tool } from '../util/tool.js';
import { Failure } from '../util/errors.js';

export interface AttachedImage {
  device: string;
  partition(n: number): string;
}

/** Attach `img` with partition scanning; detached when the scope ends (or on release(label)). */
export async function attachImage(scope: CleanupScope, img: string, label = 'loop'): Promise<AttachedImage> {
  const device = (await tool('losetup', ['--find', '--show', '--partscan', img])).trim();
  scope.defer(label, async () => {
    await tool('losetup', ['-d', device]);
  });
  const partition = (n: number) => `${device}p${n}`;
  // partition nodes appear asynchronously (udev or devtmpfs); wait briefly rather than race
  const ready = () => existsSync(partition(1)) && existsSync(partition(2));
  for (let i = 0; i < 40 && !ready(); i++) await sleep(50);
  if (!ready()) {
    // the kernel's own scan does not always produce the nodes here; add them explicitly
    await tool('partx', ['-a', device]).catch(() => undefined);
    for (let i = 0; i < 60 && !ready(); i++) await sleep(50);
    if (!existsSync(partition(1))) throw new Failure(`partition devices of ${device} did not appear (is this a container without loop partition support?)`);
  }
  return { device, partition };
}

const within = (path: string, dir: string): boolean => path === dir || path.startsWith(`${dir}/`);

/**
 * Processes whose root directory is inside `dir`: what was started in a chroot of this image
 * and is still running (an interrupted package script, say). Only these are ever killed.
 */
async function processesRootedIn(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of await otherPids()) {
    const root = await readlink(`/proc/${pid}/root`).catch(() => '');
    if (within(root, dir)) pids.push(pid);
  }
  return pids;
}

/** Every process but this one. */
async function otherPids(): Promise<number[]> {
  return (await readdir('/proc').catch(() => [] as string[])).filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid).map(Number);
}

/**
 * Whether any other process works in `dir`: its root or working directory is inside, or its
 * command line names it (mmdebstrap, which outlives a build killed outright, runs from outside
 * the tree it builds).
 */
export async function dirInUse(dir: string): Promise<boolean> {
  const real = await realpath(dir).catch(() => dir);
  for (const pid of await otherPids()) {
    for (const link of ['root', 'cwd']) {
      const to = await readlink(`/proc/${pid}/${link}`).catch(() => '');
      if (within(to, real)) return true;
    }
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv.some((a) => a.includes(dir) || a.includes(real))) return true;
  }
  return false;
}

async function umountWithRetry(target: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await tool('umount', [target]);
      return;
    } catch (e) {
      // a process started in the chroot may still hold the mount; it belongs to this build
      if (i >= 10) throw e;
      for (const pid of await processesRootedIn(target)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      await sleep(300);
    }
  }
}

/** Mount points at or below `dir`, deepest first, from /proc/self/mountinfo (octal escapes undone). */
export function mountsBelow(mountinfo: string, dir: string): string[] {
  const points = mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => within(p, dir));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Unmount whatever is still mounted at or below `dir`: what a tool that was killed mid-way
 * (mmdebstrap's /proc, /dev and /sys of its chroot) could not take down itself.
 */
export async function unmountBelow(dir: string): Promise<void> {
  // mountinfo names resolved paths: a cache reached through a symbolic link is found by its real one
  const real = await realpath(dir).catch(() => dir);
  for (const p of mountsBelow(await readFile('/proc/self/mountinfo', 'utf8'), real)) await umountWithRetry(p);
}

export async function mountDev(scope: CleanupScope, dev: string, target: string, label: string, options?: string): Promise<void> {
  if (!existsSync(target)) mkdirSync(target, { recursive: true });
  await tool('mount', [...(options ? ['-o', options] : []), dev, target]);
  scope.defer(label, () => umountWithRetry(target));
}

/**
 * A fresh directory to mount an image's file system on. It lies inside a bind mount of its own
 * that is marked shared: a container or other mount namespace started meanwhile (systemd-nspawn,
 * unshare) gets a slave copy of it, so the image's unmount reaches that copy too. Under a private
 * parent the copy would stay mounted in the other namespace, and the shrink's e2fsck would find
 * the file system still in use.
 */
export async function tempMountpoint(scope: CleanupScope, label = 'mountpoint'): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), 'syncpi-mnt-'));
  scope.defer(label, async () => {
    await rmdir(base).catch(() => undefined);
  });
  await tool('mount', ['--bind', base, base]);
  scope.defer(`${label}:shared`, () => umountWithRetry(base));
  await tool('mount', ['--make-shared', base]);
  const dir = join(base, 'root');
  await mkdir(dir);
  scope.defer(`${label}:dir`, async () => {
    await rmdir(dir).catch(() => undefined);
  });
  return dir;
}
