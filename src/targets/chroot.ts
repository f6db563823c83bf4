/**
 * A root filesystem as a Target: programs run inside it with chroot, foreign architectures
 * through qemu-user binfmt. While the chroot is open, /dev, /dev/pts, /proc and /sys are mounted,
 * the host's resolv.conf is provided and a policy-rc.d stops maintainer scripts from starting
 * services; all of it is undone afterwards — also on failure and on Ctrl-C (util/cleanup).
 * In a root of another architecture, scripts run on this machine's shell and file tools
 * (native-tools.ts); programs given to exec() are always the target's own.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { withCleanup, type CleanupScope } from '../util/cleanup.js';
import { Failure, UserError } from '../util/errors.js';
import { mountNativeTools } from './native-tools.js';
import { lineSplitter, type RunScriptOptions, type ScriptResult, type Target } from './target.js';
import { lexists } from '../util/fs.js';

export type Arch = 'amd64' | 'arm64' | 'armhf';

const QEMU: Record<Arch, string> = { amd64: 'qemu-x86_64', arm64: 'qemu-aarch64', armhf: 'qemu-arm' };
const BINFMT = '/proc/sys/fs/binfmt_misc';
const CHROOT_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', HOME: '/root', TERM: 'dumb' };

/**
 * The core qemu emulates for arm64 programs, here and in the VMs (src/vm/qemu.ts): the Pi 4's.
 * qemu's default, "max", has pointer authentication, which Debian's arm64 programs use in every
 * function call and which TCG computes with the architected cipher: byte-compiling 60 modules
 * of Python's standard library took 19.6 s on "max", 3.6 s on cortex-a72. The Pis' ARMv8.0 cores
 * execute those instructions as no-ops, as this one does.
 */
export const ARM64_CPU = 'cortex-a72';

/**
 * What every program started in a root of `arch` gets in its environment: qemu-user reads the
 * CPU from it on each start (binfmt passes no options), and maintainer scripts pass it on.
 * SYNCPI_EMULATED_CPU names another qemu CPU model: "max" is the previous way benchmarks compare
 * against (bench/build.mjs).
 */
export function emulationEnv(arch: Arch): Record<string, string> {
  if (arch !== 'arm64' || hostArch() === 'arm64') return {};
  return { QEMU_CPU: process.env.SYNCPI_EMULATED_CPU || ARM64_CPU };
}

export function hostArch(): Arch | undefined {
  switch (process.arch) {
    case 'x64':
      return 'amd64';
    case 'arm64':
      return 'arm64';
    case 'arm':
      return 'armhf';
    default:
      return undefined;
  }
}

export interface ChrootTarget extends Target {
  readonly rootfs: string;
  readonly arch: Arch;
  /** Scripts run on this machine's own shell and file tools (native-tools.ts), not emulated ones. */
  readonly nativeTools: boolean;
  /** Run argv inside the chroot (no shell involved). */
  exec(argv: string[], opts?: { input?: Buffer }): Promise<ScriptResult>;
}

async function isMountpoint(p: string): Promise<boolean> {
  const r = await execa('mountpoint', ['-q', p], { reject: false });
  return r.exitCode === 0;
}

async function unmount(p: string): Promise<void> {
  const r = await execa('umount', [p], { reject: false });
  if (r.exitCode !== 0) {
    // Something inside the chroot still holds it (a stray daemon); detach lazily so the caller
    // can still unmount the image, and say so.
    const lazy = await execa('umount', ['-l', p], { reject: false });
    if (lazy.exitCode !== 0) throw new Error(`cannot unmount ${p}: ${r.stderr.trim()}`);
  }
}

function binfmtEntry(name: string): { enabled: boolean; interpreter?: string; flags: string } | undefined {
  const p = join(BINFMT, name);
  if (!existsSync(p)) return undefined;
  const text = readFileSync(p, 'utf8');
  return {
    enabled: /^enabled$/m.test(text),
    interpreter: /^interpreter (.+)$/m.exec(text)?.[1],
    flags: /^flags: ?(.*)$/m.exec(text)?.[1] ?? '',
  };
}

const INSTALL_HINT = 'install the Debian packages qemu-user-static and binfmt-support (apt-get install qemu-user-static binfmt-support)';

/**
 * Make sure the kernel runs `arch` binaries through qemu-user: mount binfmt_misc and register
 * the interpreter when possible; otherwise a one-line error saying what to install.
 * Returns the interpreter path that must exist inside the chroot (no "F" flag), if any.
 */
export async function ensureBinfmt(arch: Arch): Promise<string | undefined> {
  if (arch === hostArch()) return undefined;
  const name = QEMU[arch];
  if (!existsSync(join(BINFMT, 'status'))) {
    await execa('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT], { reject: false });
    if (!existsSync(join(BINFMT, 'status'))) {
      throw new UserError(`cannot run ${arch} programs: binfmt_misc is not available at ${BINFMT} (load the binfmt_misc module, then ${INSTALL_HINT})`);
    }
  }
  let entry = binfmtEntry(name);
  if (!entry?.enabled) {
    const tool = await execa('sh', ['-c', 'command -v update-binfmts'], { reject: false });
    if (tool.exitCode === 0) {
      if (!entry) await execa('update-binfmts', ['--import', name], { reject: false });
      await execa('update-binfmts', ['--enable', name], { reject: false });
    } else {
      await execa('systemctl', ['restart', 'systemd-binfmt.service'], { reject: false });
    }
    entry = binfmtEntry(name);
  }
  if (!entry?.enabled || !entry.interpreter) {
    throw new UserError(`cannot run ${arch} programs: no ${name} binfmt handler is registered; ${INSTALL_HINT}`);
  }
  if (!existsSync(entry.interpreter)) {
    throw new UserError(`cannot run ${arch} programs: the binfmt interpreter ${entry.interpreter} is missing; ${INSTALL_HINT}`);
  }
  return entry.flags.includes('F') ? undefined : entry.interpreter;
}

function saveAside(scope: CleanupScope, path: string, label: string): void {
  const saved = `${path}.syncpi-saved`;
  const had = lexists(path);
  if (had) {
    rmSync(saved, { force: true });
    renameSync(path, saved);
  }
  scope.defer(label, () => {
    rmSync(path, { force: true });
    if (had) renameSync(saved, path);
  });
}

async function runIn(rootfs: string, argv: string[], opts: RunScriptOptions & { env: Record<string, string> }): Promise<ScriptResult> {
  const sub = execa('chroot', [rootfs, ...argv], {
    input: opts.stdin ?? Buffer.alloc(0),
    env: opts.env,
    extendEnv: false,
    reject: false,
    encoding: 'utf8',
    stripFinalNewline: false,
  });
  if (opts.onLine) {
    const split = lineSplitter(opts.onLine);
    sub.stdout?.on('data', (c: Buffer) => split.push(c));
    sub.stdout?.on('end', () => split.end());
  }
  const r = await sub;
  return { exitCode: r.exitCode ?? (r.signal ? 128 : 1), stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

export interface ChrootOptions {
  arch: Arch;
  /** Register cleanup in the caller's scope (keeps unmount order right when the caller has mounts too). */
  scope?: CleanupScope;
  /** false: scripts keep the root's own (emulated) tools, the reference the native run is tested against. */
  nativeTools?: boolean;
}

export async function withChroot<T>(rootfs: string, opts: ChrootOptions, fn: (t: ChrootTarget) => Promise<T>): Promise<T> {
  if (!existsSync(join(rootfs, 'bin', 'sh')) && !existsSync(join(rootfs, 'usr', 'bin', 'sh'))) {
    throw new UserError(`${rootfs} is not a root filesystem (no /bin/sh in it)`);
  }
  const inner = async (scope: CleanupScope): Promise<T> => {
    const interpreter = await ensureBinfmt(opts.arch);
    if (interpreter) {
      // Without the F flag the kernel looks the interpreter up inside the chroot.
      const inside = join(rootfs, interpreter);
      if (!lexists(inside)) {
        mkdirSync(dirname(inside), { recursive: true });
        copyFileSync(interpreter, inside);
        chmodSync(inside, 0o755);
        scope.defer(`remove ${inside}`, () => rmSync(inside, { force: true }));
      }
    }

    const mounts: Array<{ dir: string; args: string[] }> = [
      { dir: 'dev', args: ['--bind', '/dev'] },
      { dir: 'dev/pts', args: ['--bind', '/dev/pts'] },
      { dir: 'proc', args: ['-t', 'proc', 'proc'] },
      { dir: 'sys', args: ['-t', 'sysfs', '-o', 'ro', 'sysfs'] },
    ];
    for (const m of mounts) {
      const target = join(rootfs, m.dir);
      mkdirSync(target, { recursive: true });
      if (await isMountpoint(target)) continue; // someone else's mount: leave it to them
      const r = await execa('mount', [...m.args, target], { reject: false });
      if (r.exitCode !== 0) throw new Failure(`cannot mount /${m.dir} in ${rootfs}: ${r.stderr.trim()}`);
      scope.defer(`unmount ${target}`, () => unmount(target));
    }

    const resolv = join(rootfs, 'etc', 'resolv.conf');
    saveAside(scope, resolv, `restore ${resolv}`);
    writeFileSync(resolv, existsSync('/etc/resolv.conf') ? readFileSync('/etc/resolv.conf') : '', { mode: 0o644 });

    const policy = join(rootfs, 'usr', 'sbin', 'policy-rc.d');
    mkdirSync(dirname(policy), { recursive: true });
    saveAside(scope, policy, `restore ${policy}`);
    writeFileSync(policy, '#!/bin/sh\n# Installed by syncpi while it works in this root filesystem: start no services.\nexit 101\n', { mode: 0o755 });

    const env = { ...CHROOT_ENV, ...emulationEnv(opts.arch) };
    const probe = await runIn(rootfs, ['/bin/true'], { env });
    if (probe.exitCode !== 0) {
      throw new UserError(`cannot run programs in ${rootfs} (${opts.arch}): ${probe.stderr.trim() || `exit ${probe.exitCode}`}; ${INSTALL_HINT}`);
    }

    // Scripts (the converger) run on this machine's shell and file tools where the root is of
    // another architecture; exec() always runs the target's own programs.
    const native = opts.nativeTools === false ? undefined : await mountNativeTools(rootfs, scope);
    const scriptEnv = native ? { ...env, PATH: `${native}:${env.PATH}`, SYNCPI_NATIVE: native } : env;
    const shell = native ? `${native}/sh` : '/bin/sh';
    const target: ChrootTarget = {
      name: `rootfs ${rootfs} (${opts.arch})`,
      env: 'chroot',
      rootfs,
      arch: opts.arch,
      nativeTools: native !== undefined,
      runScript: (script, o) => runIn(rootfs, [shell, '-c', script], { ...o, env: scriptEnv }),
      exec: (argv, o) => runIn(rootfs, argv, { stdin: o?.input, env }),
    };
    return fn(target);
  };
  if (opts.scope) {
    // Borrow the caller's scope but release our part when we are done.
    const marker = `chroot ${rootfs} begin`;
    opts.scope.defer(marker, () => undefined);
    try {
      return await inner(opts.scope);
    } finally {
      await opts.scope.release(marker);
    }
  }
  return withCleanup(inner);
}
