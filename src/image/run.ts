/**
 * Running host tools for the image pipeline: argv arrays only, a clear error naming the missing
 * package when a tool is absent, and stderr carried into the Failure so a broken step says why.
 */
import { execa, type Options } from 'execa';
import { Failure } from '../util/errors.js';
import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';

/** Which Debian package provides each host tool the pipeline calls. */
export const TOOL_PACKAGES: Record<string, string> = {
  mmdebstrap: 'mmdebstrap',
  losetup: 'mount',
  mount: 'mount',
  umount: 'mount',
  sfdisk: 'fdisk',
  'mkfs.vfat': 'dosfstools',
  'mkfs.ext4': 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  resize2fs: 'e2fsprogs',
  dumpe2fs: 'e2fsprogs',
  mcopy: 'mtools',
  xz: 'xz-utils',
  unzip: 'unzip',
  chroot: 'coreutils',
  fstrim: 'util-linux',
  'dpkg-query': 'dpkg',
  blkid: 'util-linux',
};

export async function run(cmd: string, args: readonly string[], opts: Options = {}): Promise<string> {
  try {
    const stdinDefault = opts.input === undefined && opts.inputFile === undefined ? { stdin: 'ignore' as const } : {};
    const r = await execa(cmd, args, { ...stdinDefault, ...opts, encoding: 'utf8' } as Options);
    return typeof r.stdout === 'string' ? r.stdout : '';
  } catch (e) {
    const err = e as { code?: string; stderr?: unknown; shortMessage?: string; isTerminated?: boolean; signal?: string };
    if (err.code === 'ENOENT') {
      const pkg = TOOL_PACKAGES[cmd];
      throw new Failure(`${cmd} not found on this machine${pkg ? `: install the Debian package "${pkg}"` : ''}`);
    }
    const stderr = typeof err.stderr === 'string' ? err.stderr.trim().split('\n').slice(-15) : [];
    throw new Failure(`${cmd} failed: ${err.shortMessage ?? String(e)}`.split('\n')[0]!, stderr, { cause: e });
  }
}

/**
 * Run a tool whose stdout is a large file (xz -c, unzip -p): the file descriptor is handed to
 * the child directly, so nothing passes through this process's memory.
 */
export async function runToFile(cmd: string, args: readonly string[], outPath: string): Promise<void> {
  const fh = await open(outPath, 'w');
  try {
    await new Promise<void>((resolvePromise, reject) => {
      const child = spawn(cmd, args, { stdio: ['ignore', fh.fd, 'pipe'] });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-4000);
      });
      child.on('error', (e: NodeJS.ErrnoException) => {
        const pkg = TOOL_PACKAGES[cmd];
        reject(e.code === 'ENOENT' ? new Failure(`${cmd} not found on this machine${pkg ? `: install the Debian package "${pkg}"` : ''}`) : e);
      });
      child.on('close', (code, signal) => {
        if (code === 0) resolvePromise();
        else reject(new Failure(`${cmd} failed (${signal ?? `exit ${code}`})`, stderr.trim().split('\n').slice(-10)));
      });
    });
  } finally {
    await fh.close();
  }
}
