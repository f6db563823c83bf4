/**
 * Host tools as the build and VM pipelines call them: argv arrays only, a Failure naming the
 * Debian package when a tool is missing, and the tool's stderr carried into the Failure so a
 * broken step says why.
 */
import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import { Failure } from './errors.js';
import { run, RunError } from './run.js';

/** Which Debian package provides each host tool syncpi calls. */
export const TOOL_PACKAGES: Record<string, string> = {
  mmdebstrap: 'mmdebstrap',
  losetup: 'mount',
  mount: 'mount',
  umount: 'mount',
  sfdisk: 'fdisk',
  'mkfs.vfat': 'dosfstools',
  'mkfs.ext4': 'e2fsprogs',
  mke2fs: 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  resize2fs: 'e2fsprogs',
  dumpe2fs: 'e2fsprogs',
  mcopy: 'mtools',
  mdir: 'mtools',
  mtype: 'mtools',
  xz: 'xz-utils',
  unzip: 'unzip',
  chroot: 'coreutils',
  fstrim: 'util-linux',
  blkid: 'util-linux',
  blockdev: 'util-linux',
  'dpkg-query': 'dpkg',
  'qemu-img': 'qemu-utils',
  'qemu-system-aarch64': 'qemu-system-arm',
};

/**
 * For every mtools call: mkfs.vfat geometries that mtools finds unusual are still valid FATs,
 * and VFAT long names stay on whatever the machine's mtools.conf says.
 */
export const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1', MTOOLS_NO_VFAT: '0' };

export function missingTool(cmd: string): Failure {
  const pkg = TOOL_PACKAGES[cmd];
  return new Failure(`${cmd} not found on this machine${pkg ? `: install the Debian package "${pkg}"` : ''}`);
}

/** Run a tool to completion; its stdout. */
export async function tool(cmd: string, args: readonly string[], opts: { env?: Record<string, string>; input?: string } = {}): Promise<string> {
  try {
    return (await run(cmd, args, opts)).stdout;
  } catch (e) {
    if (!(e instanceof RunError)) throw e;
    if (e.code === 'ENOENT') throw missingTool(cmd);
    const stderr = e.stderr.trim() ? e.stderr.trim().split('\n').slice(-15) : [];
    throw new Failure(`${cmd} failed (${e.exitCode === undefined ? e.message.split('\n')[0] : `exit ${e.exitCode}`})`, stderr, { cause: e });
  }
}

/**
 * Run a tool whose stdout is a large file (xz -c, unzip -p): the file descriptor is handed to
 * the child directly, so nothing passes through this process's memory.
 */
/** Run a tool with its stdout in OUTPATH; MODE, when given, is the file's mode before anything is written. */
export async function toolToFile(cmd: string, args: readonly string[], outPath: string, mode?: number): Promise<void> {
  const fh = await open(outPath, 'w', mode ?? 0o666);
  if (mode !== undefined) await fh.chmod(mode);
  try {
    await new Promise<void>((resolvePromise, reject) => {
      const child = spawn(cmd, args, { stdio: ['ignore', fh.fd, 'pipe'] });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-4000);
      });
      child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? missingTool(cmd) : e));
      child.on('close', (code, signal) => {
        if (code === 0) resolvePromise();
        else reject(new Failure(`${cmd} failed (${signal ?? `exit ${code}`})`, stderr.trim().split('\n').slice(-10)));
      });
    });
  } finally {
    await fh.close();
  }
}
