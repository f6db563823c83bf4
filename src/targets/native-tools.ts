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
 * above all — never see a host program. The one exception is the Debian bootstrap
 * (BOOTSTRAP_TOOLSET), whose maintainer scripts run once, on a tree that compares equal, entry
 * for entry, with the fully emulated one (bench/compare-base.mjs).
 *
 * Host programs need their libraries at the paths their loader searches, which a foreign root
 * does not have: a tmpfs holds copies at exactly those paths (e.g. /usr/lib/x86_64-linux-gnu)
 * while the chroot is open. The tools are copies on a second tmpfs (NATIVE_DIR), with the loader
 * beside them and each copy's ELF interpreter field pointing there, so nothing appears at the
 * loader's own path (/lib64), which a root may hold for itself: Debian's base-files refuses to
 * install beside a /lib64 it did not make. Nothing of either can land in the image. A root that
 * already has the library directory (multiarch libraries of this machine's architecture) keeps the
 * emulated tools.
 */
import { closeSync, copyFileSync, lstatSync, mkdirSync, openSync, readSync, realpathSync, rmdirSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import type { CleanupScope } from '../util/cleanup.js';
import { Failure } from '../util/errors.js';
import { lexists } from '../util/fs.js';

/** The system's own program directories: where this machine's tools are looked up, and the rest of a build chroot's PATH. */
export const SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** Where the converger's tools appear inside the chroot; first on its PATH. */
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

/** A set of this machine's programs offered in a root, and the directory they appear in there. */
export interface NativeToolset {
  tools: readonly string[];
  dir: string;
}

export const CONVERGER_TOOLSET: NativeToolset = { tools: NATIVE_TOOLS, dir: NATIVE_DIR };

/**
 * The bootstrap's (src/image/bootstrap.ts): the same tools for the maintainer scripts' sed, grep
 * and friends, plus dpkg's own back ends, which dpkg starts by name: dpkg-deb decompresses every
 * .deb (its output is the package's own tar stream, byte for byte, whoever decompresses it) and
 * dpkg-split reads its header. Not in /run, which mmdebstrap empties before the build can take
 * the tools out again.
 */
export const BOOTSTRAP_TOOLSET: NativeToolset = { tools: [...NATIVE_TOOLS, 'dpkg-deb', 'dpkg-split'], dir: '/usr/lib/syncpi-native' };

/**
 * The loader's name beside the tools: short, as the new path must fit where the old one was, and
 * no command's name, as the directory is first on PATH (`ld` would be the linker).
 */
const LOADER = '.ld';

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
  /** The dynamic loader's own file, copied beside the tools (their PT_INTERP is rewritten to it). */
  loader: string;
  /** The directory that holds every library, and each library by the name it is loaded by. */
  libDir: string;
  /** The tools that need the loader (the others are static). */
  dynamic: Set<string>;
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

const kitCache = new Map<string, Promise<NativeKit | undefined>>();

/** This machine's tools and what they load, or undefined when they are not one tidy set. */
export function nativeKit(names: readonly string[] = NATIVE_TOOLS): Promise<NativeKit | undefined> {
  const id = names.join(' ');
  const cached = kitCache.get(id);
  if (cached) return cached;
  const resolved = (async () => {
    const tools = new Map<string, string>();
    const interpreters = new Set<string>();
    const libs = new Map<string, string>();
    const dynamic = new Set<string>();
    for (const name of names) {
      const which = await execa('sh', ['-c', 'command -v "$1"', 'sh', name], { reject: false, env: { PATH: SYSTEM_PATH }, extendEnv: false });
      const found = which.stdout.trim();
      if (which.exitCode !== 0 || !found.startsWith('/')) return undefined;
      const file = realpathSync(found);
      tools.set(name, file);
      const ldd = await execa('ldd', [file], { reject: false });
      if (ldd.exitCode !== 0) continue; // a static program needs nothing
      const deps = parseLdd(ldd.stdout);
      if (deps.interpreter) {
        interpreters.add(deps.interpreter);
        dynamic.add(name);
      }
      for (const l of deps.libs) libs.set(basename(l), realpathSync(l));
    }
    const libDirs = new Set([...libs.values()].map((l) => dirname(l)));
    if (interpreters.size !== 1 || libDirs.size !== 1) return undefined;
    const interp = [...interpreters][0]!;
    return { tools, dynamic, loader: realpathSync(interp), libDir: [...libDirs][0]!, libs: [...libs].map(([name, file]) => ({ name, file })) };
  })();
  kitCache.set(id, resolved);
  return resolved;
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
 * Point a 64-bit little-endian ELF program at another loader by rewriting its PT_INTERP in place.
 * False when the file is not such a program or the path does not fit in the field.
 */
export function setInterpreter(file: string, loader: string): boolean {
  const fd = openSync(file, 'r+');
  try {
    const head = Buffer.alloc(64);
    readSync(fd, head, 0, 64, 0);
    // ELF magic, ELFCLASS64, ELFDATA2LSB
    if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return false;
    const phoff = Number(head.readBigUInt64LE(0x20));
    const phentsize = head.readUInt16LE(0x36);
    const phnum = head.readUInt16LE(0x38);
    const ph = Buffer.alloc(phentsize);
    for (let i = 0; i < phnum; i++) {
      readSync(fd, ph, 0, phentsize, phoff + i * phentsize);
      if (ph.readUInt32LE(0) !== 3) continue; // PT_INTERP
      const offset = Number(ph.readBigUInt64LE(8));
      const size = Number(ph.readBigUInt64LE(32));
      const path = Buffer.from(loader);
      if (path.length + 1 > size) return false;
      const field = Buffer.alloc(size); // NUL-padded: the kernel reads up to the first NUL
      path.copy(field);
      writeSync(fd, field, 0, size, offset);
      return true;
    }
    return false;
  } finally {
    closeSync(fd);
  }
}

/**
 * Offer this machine's tools inside `rootfs` for the life of `scope`. Returns the directory to put
 * first on PATH, or undefined when the root must keep its own (emulated) tools.
 */
export async function mountNativeTools(rootfs: string, scope: CleanupScope, toolset: NativeToolset = CONVERGER_TOOLSET): Promise<string | undefined> {
  const kit = await nativeKit(toolset.tools);
  if (!kit) return undefined;
  const libDir = join(rootfs, kit.libDir);
  const bin = join(rootfs, toolset.dir);
  // The library path must be free in the root: what is there belongs to the root's own programs.
  // And every mount point must really lie inside the root, not behind one of its links.
  if (lexists(libDir)) return undefined;
  if (![libDir, bin].every((p) => parentInside(rootfs, p))) return undefined;
  if (lexists(bin) && !lstatSync(bin).isDirectory()) return undefined;

  mkdirSync(libDir);
  await mountTmpfs(libDir, scope, true);
  for (const lib of kit.libs) copyFileSync(lib.file, join(libDir, lib.name));
  await readOnly(libDir);

  const made = !lexists(bin);
  mkdirSync(bin, { recursive: true });
  await mountTmpfs(bin, scope, made);
  copyFileSync(kit.loader, join(bin, LOADER));
  const loader = `${toolset.dir}/${LOADER}`;
  for (const [name, file] of kit.tools) {
    const copy = join(bin, name);
    copyFileSync(file, copy);
    if (kit.dynamic.has(name) && !setInterpreter(copy, loader)) throw new Failure(`cannot point ${file}'s copy at ${loader}: not a 64-bit ELF program with room for that path`);
  }
  await readOnly(bin);
  return toolset.dir;
}
