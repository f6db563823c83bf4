/**
 * The embedded default base: a Raspberry Pi image made from Debian packages with mmdebstrap,
 * laid out like Raspberry Pi OS. The expensive part under emulation is the initramfs, so the
 * recipe defers update-initramfs during package installation and builds it once at the end with
 * a targeted module list (see image/debian/).
 */
import { execa } from 'execa';
import { mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Reporter } from '../util/report.js';
import { Failure } from '../util/errors.js';
import { recipeDir, basePackages } from './recipe.js';
import { bootstrapLineReader, progressDetail, slowestSetups } from './bootstrap-progress.js';
import { createImageFromTrees } from './layout.js';
import { mmdebstrapCacheArgs } from './deb-cache.js';
import { dropAptState } from './finish.js';
import { missingTool, tool } from '../util/tool.js';
import { ensureBinfmt, withChroot, type Arch } from '../targets/chroot.js';
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
  opts.scope.defer('bootstrap:workdir', () => removeTree(opts.workDir));
  await mkdir(opts.workDir, { recursive: true });
  await ensureBinfmt(opts.arch);

  const include = basePackages(opts.arch, recipe);
  const components = 'main,non-free-firmware';
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
    `--include=${include.join(',')}`,
    ...mmdebstrapCacheArgs(opts.debs),
    `--essential-hook=${join(recipe, 'hooks/essential.sh')}`,
    `--customize-hook=${join(recipe, 'hooks/customize.sh')}`,
    opts.suite,
    root,
    `deb ${opts.mirror} ${opts.suite} ${components.replace(/,/g, ' ')}`,
  ];

  const times: BootstrapTimes = { mmdebstrapMs: 0, imageMs: 0 };
  const t0 = Date.now();
  await opts.reporter.step(`bootstrap Debian ${opts.suite} ${opts.arch} (${include.length} packages)`, async (progress) => {
    const proc = execa('mmdebstrap', args, {
      all: true,
      stdin: 'ignore',
      reject: false,
      env: { SYNCPI_RECIPE: recipe },
    });
    // on Ctrl-C mmdebstrap must unmount its chroot's /proc and /dev before the tree is removed
    opts.scope.defer('bootstrap:mmdebstrap', async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await Promise.resolve(proc).catch(() => undefined);
      }
    });
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
    }
    reader.end(Date.now());
    times.slowest = slowestSetups(p);
    times.fetches = p.downloaded;
    const r = await proc;
    if (r.failed) {
      if ((r as { code?: string }).code === 'ENOENT') throw missingTool('mmdebstrap');
      throw new Failure(`mmdebstrap failed (exit ${r.exitCode ?? r.signal})`, tail.slice(-20));
    }
  });
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
