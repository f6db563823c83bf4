/**
 * The embedded default base: a Raspberry Pi image made from Debian packages with mmdebstrap,
 * laid out like Raspberry Pi OS.
 *
 * Under emulation every program the package setup starts costs a qemu-user start and runs
 * translated, on the Pi 4's core (emulationEnv: qemu's default core made this bootstrap 2.3×
 * slower), so the build keeps that to the target's own programs:
 * - update-initramfs is deferred while packages are installed and runs once at the end, with a
 *   targeted module list (see image/debian/);
 * - once the essential set is unpacked, this machine's dpkg-deb and file tools are offered in the
 *   root (BOOTSTRAP_TOOLSET): dpkg decompresses each .deb natively, and the maintainer scripts'
 *   sed, grep, ln… run natively, while the scripts themselves, dpkg, perl and every program of
 *   the packages stay the target's (ca-certificates' setup: 85 s emulated, 25 s so);
 * - dpkg does not sync each file it writes (the tree becomes an image afterwards, or nothing);
 * - mmdebstrap runs on the system PATH: a user's shims (pyenv's python3 for mmtarfilter) cost
 *   seconds per package.
 */
import { execa, type ResultPromise } from 'execa';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Reporter } from '../util/report.js';
import { Failure } from '../util/errors.js';
import { recipeDir, basePackages } from './recipe.js';
import { bootstrapLineReader, progressDetail, slowestSetups } from './bootstrap-progress.js';
import { createImageFromTrees } from './layout.js';
import { unmountBelow } from './loop.js';
import { mmdebstrapCacheArgs } from './deb-cache.js';
import { dropAptState } from './finish.js';
import { missingTool, tool } from '../util/tool.js';
import { emulationEnv, ensureBinfmt, withChroot, type Arch } from '../targets/chroot.js';
import { BOOTSTRAP_TOOLSET, SYSTEM_PATH, mountNativeTools } from '../targets/native-tools.js';
import type { CleanupScope } from '../util/cleanup.js';

/** Remove a tree without crossing into anything still mounted inside it (/proc, /dev of a chroot). */
export async function removeTree(dir: string): Promise<void> {
  await tool('rm', ['-rf', '--one-file-system', dir]);
}

export interface BootstrapOptions {
  suite: string;
  arch: 'arm64' | 'armhf';
  mirror: string;
  /** Where the .debs are kept between builds (deb-cache.ts). */
  debs: string;
  workDir: string;
  reporter: Reporter;
  scope: CleanupScope;
}

export interface BootstrapTimes {
  mmdebstrapMs: number;
  initramfsMs?: number;
  imageMs: number;
  /** The packages whose configuration took longest (under emulation: their maintainer scripts). */
  slowest?: Array<{ name: string; ms: number }>;
  /** What apt fetched (index files and .debs): a second cold build finds its .debs in the cache. */
  fetches?: number;
  /** Whether dpkg and the maintainer scripts had this machine's tools (BOOTSTRAP_TOOLSET). */
  nativeTools?: boolean;
}

async function duBytes(dir: string): Promise<number> {
  const out = await tool('du', ['-s', '--block-size=1', '-x', dir]);
  return Number(out.split(/\s+/)[0]);
}

/** Bootstrap into workDir and lay out `img`. */
export async function bootstrapImage(opts: BootstrapOptions, img: string, diskId: string): Promise<BootstrapTimes> {
  const recipe = recipeDir();
  const root = join(opts.workDir, 'root');
  const boot = join(opts.workDir, 'boot');
  await removeTree(root);
  await removeTree(boot);
  opts.scope.defer('bootstrap:workdir', async () => {
    await unmountBelow(opts.workDir);
    await removeTree(opts.workDir);
  });
  await mkdir(opts.workDir, { recursive: true });
  await ensureBinfmt(opts.arch);

  const include = basePackages(opts.arch, recipe);
  const components = 'main,non-free-firmware';
  // the extract hook asks here for the native tools and waits for the answer (offerNativeTools)
  const ask = join(opts.workDir, 'ask');
  await tool('mkfifo', ['-m', '0600', ask]);
  // mmdebstrap gives its chroot its own PATH; apt gives dpkg DPkg::Path. The tools' directory
  // exists only inside the root, and only once they are offered.
  const chrootPath = `${BOOTSTRAP_TOOLSET.dir}:${SYSTEM_PATH}`;
  const args = [
    '--mode=root',
    // apt's and dpkg's own lines are what progress is counted from
    '--verbose',
    '--variant=apt',
    `--architectures=${opts.arch}`,
    `--components=${components}`,
    // docs, man pages and translations are never read on an appliance and cost unpack time
    '--dpkgopt=path-exclude=/usr/share/man/*',
    '--dpkgopt=path-exclude=/usr/share/doc/*',
    '--dpkgopt=path-include=/usr/share/doc/*/copyright',
    '--dpkgopt=path-exclude=/usr/share/locale/*',
    '--dpkgopt=path-exclude=/usr/share/info/*',
    '--aptopt=Acquire::Retries "3"',
    // debconf's pre-install scan of every .deb (apt-extracttemplates) costs minutes under
    // emulation and asks nothing in a non-interactive build; configure still sets defaults
    '--aptopt=#clear DPkg::Pre-Install-Pkgs;',
    `--aptopt=DPkg::Path "${chrootPath}"`,
    `--include=${include.join(',')}`,
    ...mmdebstrapCacheArgs(opts.debs),
    `--extract-hook=${join(recipe, 'hooks/extract.sh')}`,
    `--essential-hook=${join(recipe, 'hooks/essential.sh')}`,
    `--customize-hook=${join(recipe, 'hooks/customize.sh')}`,
    opts.suite,
    root,
    `deb ${opts.mirror} ${opts.suite} ${components.replace(/,/g, ' ')}`,
  ];

  const times: BootstrapTimes = { mmdebstrapMs: 0, imageMs: 0 };
  const t0 = Date.now();
  await opts.reporter.step(`bootstrap Debian ${opts.suite} ${opts.arch} (${include.length} packages)`, async (progress) => {
    // released once mmdebstrap is gone: the native tools must not reach the image
    opts.scope.defer('bootstrap:native', () => undefined);
    const proc = execa('mmdebstrap', args, {
      all: true,
      stdin: 'ignore',
      reject: false,
      // a process group of its own: mmdebstrap forks workers that outlive a signal to it alone
      detached: true,
      env: { SYNCPI_RECIPE: recipe, SYNCPI_ASK: ask, PATH: chrootPath, ...emulationEnv(opts.arch) },
    });
    opts.scope.defer('bootstrap:mmdebstrap', () => stopGroup(proc));
    const tail: string[] = [];
    const reader = bootstrapLineReader();
    const p = reader.progress;
    for await (const line of proc.iterable({ from: 'all' })) {
      const l = String(line);
      tail.push(l);
      if (tail.length > 40) tail.shift();
      if (reader.line(l, Date.now())) progress({ done: p.configured, ...(p.total ? { total: p.total } : {}), unit: 'items', detail: progressDetail(p) });
      const m = /^syncpi: initramfs built in (\d+) s/.exec(l);
      if (m) times.initramfsMs = Number(m[1]) * 1000;
      if (l.startsWith('syncpi: native tools wanted')) times.nativeTools = await offerNativeTools(root, ask, opts.scope);
    }
    reader.end(Date.now());
    times.slowest = slowestSetups(p);
    times.fetches = p.downloaded;
    const r = await proc;
    await opts.scope.release('bootstrap:native');
    if (r.failed) {
      if ((r as { code?: string }).code === 'ENOENT') throw missingTool('mmdebstrap');
      throw new Failure(`mmdebstrap failed (exit ${r.exitCode ?? r.signal})`, tail.slice(-20));
    }
  });
  if (!times.nativeTools) opts.reporter.info('the package setup ran on the target\'s own tools alone (emulated): this machine\'s could not be offered in the root');
  times.mmdebstrapMs = Date.now() - t0;
  if (times.slowest?.length) opts.reporter.info(`slowest package setups: ${times.slowest.map((x) => `${x.name} ${Math.round(x.ms / 1000)} s`).join(', ')}`);

  const t1 = Date.now();
  await opts.reporter.step('lay out the image (bootfs + rootfs)', async () => {
    // the boot partition's content comes from the firmware hooks' /boot/firmware
    await rename(join(root, 'boot/firmware'), boot);
    await mkdir(join(root, 'boot/firmware'));
    await dropAptState(root);
    const content = await duBytes(root);
    // room for the Plan's files and for mke2fs metadata; the final image is shrunk to fit anyway
    const rootBytes = Math.ceil(content * 1.25) + 256 * 1024 * 1024;
    await createImageFromTrees({ img, bootDir: boot, rootDir: root, bootMiB: 512, rootBytes, diskId });
  });
  times.imageMs = Date.now() - t1;
  await removeTree(root);
  await removeTree(boot);
  return times;
}

/**
 * Stop a process group started with `detached`: TERM, then KILL whatever is left after 10 s. The
 * group, not the leader, is what counts: mmdebstrap's workers outlive it.
 */
async function stopGroup(proc: ResultPromise): Promise<void> {
  const pid = proc.pid;
  if (pid === undefined) return;
  const send = (s: NodeJS.Signals | 0): boolean => {
    try {
      process.kill(-pid, s);
      return true;
    } catch {
      return false; // no process of the group is left
    }
  };
  if (send(0)) {
    send('SIGTERM');
    for (let i = 0; i < 100 && send(0); i++) await sleep(100);
    if (send(0)) send('SIGKILL');
  }
  await Promise.resolve(proc).catch(() => undefined);
}

/**
 * Mount BOOTSTRAP_TOOLSET in the root mmdebstrap is building and answer its extract hook, which
 * waits for the answer before dpkg configures anything. An answer is always written, so the hook
 * never waits for a build that could not offer them.
 */
async function offerNativeTools(root: string, ask: string, scope: CleanupScope): Promise<boolean> {
  let offered = false;
  try {
    offered = (await mountNativeTools(root, scope, BOOTSTRAP_TOOLSET)) !== undefined;
  } finally {
    await writeFile(ask, offered ? 'offered\n' : 'declined\n');
  }
  return offered;
}

/**
 * The recipe's choice of who owns the wired network, made again once a packages layer is in:
 * the config may have brought NetworkManager.
 */
export async function settleNetwork(root: string, arch: Arch, scope: CleanupScope): Promise<void> {
  const script = await readFile(join(recipeDir(), 'network.sh'));
  await withChroot(root, { arch, scope }, async (t) => {
    const r = await t.exec(['/bin/sh', '-s'], { input: script });
    if (r.exitCode !== 0) throw new Failure(`the recipe's network.sh failed in ${root} (exit ${r.exitCode ?? r.signal})`, r.stderr.split('\n').slice(-10));
  });
}
