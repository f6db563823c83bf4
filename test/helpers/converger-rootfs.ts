/**
 * Small Debian root filesystems for the converger's integration tests, made with mmdebstrap from
 * the machine's own apt mirror and cached as tarballs under /var/cache/syncpi-test/, keyed by
 * everything that shapes them, so reruns reuse them. Each test unpacks a fresh copy.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { hostMirror } from '../../src/image/mirror.js';
import { emulationEnv } from '../../src/targets/chroot.js';

export const CACHE_DIR = '/var/cache/syncpi-test';

export interface RootfsSpec {
  suite: string;
  arch: 'amd64' | 'arm64' | 'armhf';
  include: string[];
  /** Packages downloaded into apt's archive cache but not installed: tests install them offline. */
  fetch?: string[];
}

async function requireTool(name: string, pkg: string): Promise<void> {
  const r = await execa('sh', ['-c', 'command -v "$1"', 'sh', name], { reject: false });
  if (r.exitCode !== 0) throw new Error(`${name} not found on this machine: install the Debian package ${pkg}`);
}

/** Path of the cached tarball for `spec`, building it first when absent. */
export async function cachedRootfsTar(spec: RootfsSpec): Promise<string> {
  const mirror = hostMirror();
  const include = [...spec.include].sort();
  const fetch = [...(spec.fetch ?? [])].sort();
  const key = createHash('sha256')
    .update(JSON.stringify({ v: 1, suite: spec.suite, arch: spec.arch, include, ...(fetch.length ? { fetch } : {}), mirror, variant: 'minbase' }))
    .digest('hex')
    .slice(0, 16);
  const out = join(CACHE_DIR, `rootfs-${spec.suite}-${spec.arch}-${key}.tar`);
  if (existsSync(out)) return out;
  await requireTool('mmdebstrap', 'mmdebstrap');
  mkdirSync(CACHE_DIR, { recursive: true });
  const partial = `${out}.partial-${process.pid}`;
  try {
    const args = ['--quiet', '--format=tar', '--variant=minbase', `--architectures=${spec.arch}`, '--components=main'];
    if (include.length) args.push(`--include=${include.join(',')}`);
    // Keep the package lists so apt in the test chroot resolves without an update first.
    args.push('--skip=cleanup/apt/lists');
    if (fetch.length) {
      // the .debs stay in the archive cache, so a test's apt-get install needs no network
      args.push('--skip=cleanup/apt/cache', `--customize-hook=chroot "$1" apt-get install --download-only -y -q ${fetch.join(' ')}`);
    }
    args.push(spec.suite, partial, `deb ${mirror} ${spec.suite} main`);
    await execa('mmdebstrap', args, { stdio: ['ignore', 'pipe', 'pipe'], env: emulationEnv(spec.arch) });
    renameSync(partial, out);
  } finally {
    rmSync(partial, { force: true });
  }
  return out;
}

/** Unpack a fresh copy of the cached rootfs into a new temp dir; returns its path. */
export async function freshRootfs(spec: RootfsSpec): Promise<string> {
  const tar = await cachedRootfsTar(spec);
  const dir = mkdtempSync(join(tmpdir(), `syncpi-rootfs-${spec.arch}-`));
  await execa('tar', ['-x', '-p', '--numeric-owner', '-f', tar, '-C', dir]);
  return dir;
}

export function removeRootfs(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** The amd64 rootfs the converger tests apply to: systemd for units, `file` for the cascade case, `hello` to install offline. */
export const AMD64_SPEC: RootfsSpec = {
  suite: 'bookworm',
  arch: 'amd64',
  include: ['systemd', 'systemd-sysv', 'dbus', 'file', 'nano', 'less'],
  fetch: ['hello'],
};

/** The amd64 rootfs plus what the trust tests run for real inside it: nft for the firewall. */
export const AMD64_NFT_SPEC: RootfsSpec = { ...AMD64_SPEC, include: [...AMD64_SPEC.include, 'nftables'] };

export const ARM64_SPEC: RootfsSpec = { suite: 'bookworm', arch: 'arm64', include: [] };
