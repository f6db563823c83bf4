/**
 * Shared pieces of the image build tests: a hand-made Plan, read-only inspection of a built
 * image through a loop device (always detached), and a child process that runs a build so a
 * test can interrupt it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, rmdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Plan } from '../../src/plan/types.js';
import { sysctlItems } from '../../src/plan/derived-files.js';
import type { Reporter, ProgressUpdate } from '../../src/util/report.js';

export const HOST_TOOLS = ['mmdebstrap', 'sfdisk', 'mkfs.vfat', 'mcopy', 'mdir', 'blkdiscard', 'mkfs.ext4', 'resize2fs', 'e2fsck', 'losetup', 'bmaptool', 'xz', 'blkid'];

/** Fail loudly (not skip) when a tool CI should have installed is missing. */
export function requireTools(tools = HOST_TOOLS): void {
  const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length) throw new Error(`missing host tools: ${missing.join(', ')} (install mmdebstrap fdisk dosfstools mtools e2fsprogs mount bmap-tools xz-utils qemu-user-static binfmt-support)`);
}

export function testPlan(over: Partial<Plan> & { hostname?: string } = {}): Plan {
  const hostname = over.hostname ?? 'pi-test';
  const sysctls = over.sysctls ?? { 'vm.swappiness': '10' };
  const sysctl = sysctlItems(sysctls, 'system');
  return {
    format: 1,
    name: over.name ?? 'appliance',
    hostname,
    base: over.base ?? { kind: 'debian', suite: 'trixie', arch: 'arm64' },
    configHash: over.configHash ?? `test-${hostname}`,
    packages: over.packages ?? { install: ['jq'], purge: [], keep: [] },
    users: over.users ?? [
      { name: 'syncer', system: true, home: '/var/lib/syncer', shell: '/usr/sbin/nologin', groups: [], feature: 'sync' },
    ],
    dirs: over.dirs ?? [{ path: '/var/lib/syncer/data', mode: '0750', owner: 'syncer', group: 'syncer', feature: 'sync' }],
    files: [
      ...(over.files ?? [
        { path: '/etc/hostname', mode: '0644', owner: 'root', group: 'root', content: `${hostname}\n`, notify: [], feature: 'system' },
        { path: '/etc/syncpi/panel.conf', mode: '0640', owner: 'root', group: 'syncer', content: `host=${hostname}\n`, notify: [], feature: 'panel' },
        { path: '/usr/local/bin/syncpi-hello', mode: '0755', owner: 'root', group: 'root', content: '#!/bin/sh\necho hello\n', notify: [], feature: 'system' },
      ]),
      ...sysctl.files,
    ],
    units: over.units ?? { enable: [], disable: [], mask: ['apt-daily.timer'] },
    sysctls,
    kernelParams: over.kernelParams ?? {},
    handlers: sysctl.handlers,
    checks: [],
    notes: [],
    models: over.models ?? [],
  };
}

/**
 * Attach an image read-only, mount the root read-only and copy the FAT boot partition's files
 * out with mtools (build machines may lack a vfat driver), run fn, always undo.
 */
export async function inspectImage<T>(img: string, fn: (root: string, boot: string, dev: string) => Promise<T> | T): Promise<T> {
  const dev = execFileSync('losetup', ['--find', '--show', '--partscan', '--read-only', img], { encoding: 'utf8' }).trim();
  const root = mkdtempSync(join(tmpdir(), 'syncpi-inspect-'));
  const boot = mkdtempSync(join(tmpdir(), 'syncpi-inspect-boot-'));
  let mounted = false;
  try {
    const ready = () => spawnSync('test', ['-b', `${dev}p2`]).status === 0;
    for (let i = 0; i < 40 && !ready(); i++) await new Promise((r) => setTimeout(r, 50));
    if (!ready()) spawnSync('partx', ['-a', dev]);
    for (let i = 0; i < 60 && !ready(); i++) await new Promise((r) => setTimeout(r, 50));
    execFileSync('mount', ['-o', 'ro', `${dev}p2`, root]);
    mounted = true;
    execFileSync('mcopy', ['-s', '-p', '-m', '-n', '-i', `${dev}p1`, '::/*', `${boot}/`], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
    return await fn(root, boot, dev);
  } finally {
    if (mounted) spawnSync('umount', [root]);
    spawnSync('losetup', ['-d', dev]);
    rmSync(boot, { recursive: true, force: true });
    try {
      rmdirSync(root);
    } catch {
      /* still mounted: the assertions on mounts report it */
    }
  }
}

/** Loop devices whose backing file lies under `dir`. */
export function loopsUnder(dir: string): string[] {
  const out = execFileSync('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 2 && f[1]!.startsWith(dir))
    .map((f) => f[0]!);
}

export function mountsMatching(re: RegExp): string[] {
  return execFileSync('cat', ['/proc/mounts'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => re.test(l));
}

/**
 * Units enabled in ROOT (linked from some *.wants directory) whose ExecStart runs ssh-keygen,
 * read from the unit files themselves so a generator is found whatever its name.
 */
/** Units enabled in a root: the names linked from /etc/systemd/system/*.wants. */
export function enabledUnits(root: string): Set<string> {
  const etc = join(root, 'etc/systemd/system');
  const linked = new Set<string>();
  for (const d of readdirSync(etc).filter((n) => n.endsWith('.wants'))) for (const u of readdirSync(join(etc, d))) linked.add(u);
  return linked;
}

export function enabledHostKeyGenerators(root: string): string[] {
  const etc = join(root, 'etc/systemd/system');
  const linked = enabledUnits(root);
  const unitFile = (u: string): string | undefined => [join(etc, u), join(root, 'usr/lib/systemd/system', u)].find((p) => existsSync(p));
  return [...linked]
    .filter((u) => {
      const f = unitFile(u);
      return f !== undefined && /^ExecStart=.*ssh-keygen/m.test(readFileSync(f, 'utf8'));
    })
    .sort();
}

/** A Reporter that records what a build said, for assertions (and prints nothing). */
export class RecordingReporter implements Reporter {
  readonly json = false;
  readonly steps: Array<{ name: string; ms: number; ok: boolean }> = [];
  readonly infos: string[] = [];
  readonly warnings: string[] = [];
  async step<T>(name: string, fn: (p: (u: ProgressUpdate) => void) => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
      const r = await fn(() => {});
      this.steps.push({ name, ms: Date.now() - t0, ok: true });
      return r;
    } catch (e) {
      this.steps.push({ name, ms: Date.now() - t0, ok: false });
      throw e;
    }
  }
  info(message: string): void {
    this.infos.push(message);
  }
  warn(message: string): void {
    this.warnings.push(message);
  }
  result(): void {}
}

/** Every entry of a mounted root: type, mode, owners, and content hash or link target (no times). */
export function treeOf(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const r = `${rel}/${name}`;
      const st = lstatSync(join(root, r));
      const meta = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isSymbolicLink()) out.set(r, `link ${meta} ${readlinkSync(join(root, r))}`);
      else if (st.isDirectory()) {
        out.set(r, `dir ${meta}`);
        walk(r);
      } else if (st.isFile()) out.set(r, `file ${meta} ${createHash('sha256').update(readFileSync(join(root, r))).digest('hex')}`);
      else out.set(r, `other ${meta} ${st.rdev}`);
    }
  };
  walk('');
  return out;
}
