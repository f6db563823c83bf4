/**
 * The converger's shell and file tools in a foreign-architecture chroot, run natively instead of
 * under qemu-user.
 *
 * The converger is a shell script. In an image build nearly all of its time went into emulation:
 * about 1,400 starts of grep, stat, mv, cat, awk, mktemp, sync… at 50–300 ms each, and the shell
 * itself interpreting its loops. Those programs only read and write files, so this machine's own
 * dash, coreutils, grep, sed, mawk, diffutils and tar — the same programs a live Pi runs the
 * converger with — do that work natively inside the same chroot, against the same root: one
 * converger, the same steps and records, only faster.
 *
 * The target's own programs (apt-get, dpkg, systemctl, useradd, locale-gen…) are not in the
 * list, so PATH still finds the target's, and the converger starts those that start others with
 * the target's own PATH (`target` in provision/facts.sh), so their children — maintainer scripts
 * above all — never see a host program.
 *
 * Host programs need their dynamic loader and libraries at the paths they were linked for, which
 * a foreign root does not have: a tmpfs holds copies at exactly those paths (e.g.
 * /usr/lib/x86_64-linux-gnu and a /lib64 link) while the chroot is open, and the tools are on a
 * second tmpfs at /run/syncpi-native. Nothing of either can land in the image. A root that already
 * has those paths (multiarch libraries of this machine's architecture) keeps the emulated tools.
 */
import { copyFileSync, lstatSync, mkdirSync, realpathSync, rmdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import type { CleanupScope } from '../util/cleanup.js';
import { Failure } from '../util/errors.js';
import { lexists } from '../util/fs.js';

/** Where the tools appear inside the chroot; first on the converger's PATH. */
export const NATIVE_DIR = '/run/syncpi-native';

/**
 * The programs the converger (provision/*.sh and the bundle run script) takes from this machine:
 * the shell, file and text tools, and the account lookups (getent, id, setpriv), which read only
 * the root's own /etc/passwd and /etc/group (glibc's files lookup is part of libc itself). Never a
 * program whose result depends on the target's packages or services (dpkg, apt, systemctl, the
 * passwd tools that write accounts).
 */
export const NATIVE_TOOLS = [
  'sh', 'awk', 'basename', 'cat', 'chgrp', 'chmod', 'chown', 'cmp', 'cp', 'cut', 'date', 'diff', 'dirname', 'env',
  'expr', 'find', 'getent', 'grep', 'head', 'id', 'ln', 'ls', 'mkdir', 'mktemp', 'mv', 'od', 'readlink', 'realpath',
  'rm', 'rmdir', 'sed', 'setpriv', 'sha256sum', 'sleep', 'sort', 'stat', 'sync', 'tail', 'tar', 'tee', 'touch', 'tr',
  'uniq', 'wc',
] as const;

/** True when PATH's parent directory exists and resolves to a place inside ROOT. */
function parentInside(root: string, path: string): boolean {
  try {
    const real = realpathSync(dirname(path));
    const top = realpathSync(root);
    return real === top || real.startsWith(`${top}/`);
  } catch {
    return false;
  }
}

export interface NativeKit {
  /** Host path of each tool, by name. */
  tools: Map<string, string>;
  /** The dynamic loader as the tools reference it (PT_INTERP), and its real file. */
  interpreter: { path: string; file: string };
  /** The directory that holds every library, and each library by the name it is loaded by. */
  libDir: string;
  libs: Array<{ name: string; file: string }>;
}

/** `ldd` output → the loader path as referenced and the resolved library paths. */
export function parseLdd(out: string): { interpreter?: string; libs: string[] } {
  let interpreter: string | undefined;
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const arrow = /^\s*\S+ => (\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (arrow) libs.push(arrow[1]!);
    else {
      const bare = /^\s*(\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
      if (bare) interpreter = bare[1];
    }
  }
  return { interpreter, libs };
}

let kitCache: Promise<NativeKit | undefined> | undefined;

/** This machine's tools and what they load, or undefined when they are not one tidy set. */
export function nativeKit(): Promise<NativeKit | undefined> {
  kitCache ??= (async () => {
    const tools = new Map<string, string>();
    const interpreters = new Set<string>();
    const libs = new Map<string, string>();
    for (const name of NATIVE_TOOLS) {
      const which = await execa('sh', ['-c', 'command -v "$1"', 'sh', name], { reject: false, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, extendEnv: false });
      const found = which.stdout.trim();
      if (which.exitCode !== 0 || !found.startsWith('/')) return undefined;
      const file = realpathSync(found);
      tools.set(name, file);
      const ldd = await execa('ldd', [file], { reject: false });
      if (ldd.exitCode !== 0) continue; // a static program needs nothing
      const deps = parseLdd(ldd.stdout);
      if (deps.interpreter) interpreters.add(deps.interpreter);
      for (const l of deps.libs) libs.set(basename(l), realpathSync(l));
    }
    const libDirs = new Set([...libs.values()].map((l) => dirname(l)));
    if (interpreters.size !== 1 || libDirs.size !== 1) return undefined;
    const interp = [...interpreters][0]!;
    return { tools, interpreter: { path: interp, file: realpathSync(interp) }, libDir: [...libDirs][0]!, libs: [...libs].map(([name, file]) => ({ name, file })) };
  })();
  return kitCache;
}

async function mountTmpfs(dir: string, scope: CleanupScope, created: boolean): Promise<void> {
  const r = await execa('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0755,nosuid,nodev', 'syncpi-native', dir], { reject: false });
  if (r.exitCode !== 0) throw new Failure(`cannot mount a tmpfs at ${dir}: ${r.stderr.trim()}`);
  scope.defer(`unmount ${dir}`, async () => {
    const u = await execa('umount', [dir], { reject: false });
    if (u.exitCode !== 0) await execa('umount', ['-l', dir], { reject: false });
    if (created) rmdirSync(dir);
  });
}

async function readOnly(dir: string): Promise<void> {
  const r = await execa('mount', ['-o', 'remount,ro', dir], { reject: false });
  if (r.exitCode !== 0) throw new Failure(`cannot make ${dir} read-only: ${r.stderr.trim()}`);
}

/**
 * Offer this machine's tools inside `rootfs` for the life of `scope`. Returns the directory to put
 * first on PATH, or undefined when the root must keep its own (emulated) tools.
 */
export async function mountNativeTools(rootfs: string, scope: CleanupScope): Promise<string | undefined> {
  const kit = await nativeKit();
  if (!kit) return undefined;
  const libDir = join(rootfs, kit.libDir);
  const interpDir = dirname(kit.interpreter.path);
  const interpInRoot = join(rootfs, interpDir);
  const bin = join(rootfs, NATIVE_DIR);
  // Both paths must be free in the root: what is there belongs to the root's own programs. And
  // every mount point must really lie inside the root, not behind one of its links.
  if (lexists(libDir) || (interpDir !== kit.libDir && lexists(interpInRoot))) return undefined;
  if (![libDir, interpInRoot, bin].every((p) => parentInside(rootfs, p))) return undefined;
  if (lexists(bin) && !lstatSync(bin).isDirectory()) return undefined;

  mkdirSync(libDir);
  await mountTmpfs(libDir, scope, true);
  for (const lib of kit.libs) copyFileSync(lib.file, join(libDir, lib.name));
  copyFileSync(kit.interpreter.file, join(libDir, basename(kit.interpreter.path)));
  await readOnly(libDir);
  if (interpDir !== kit.libDir) {
    // an absolute link: it resolves inside the chroot, and is gone before anything else sees it
    symlinkSync(kit.libDir, interpInRoot);
    scope.defer(`remove ${interpInRoot}`, () => unlinkSync(interpInRoot));
  }

  const made = !lexists(bin);
  mkdirSync(bin, { recursive: true });
  await mountTmpfs(bin, scope, made);
  for (const [name, file] of kit.tools) copyFileSync(file, join(bin, name));
  await readOnly(bin);
  return NATIVE_DIR;
}
