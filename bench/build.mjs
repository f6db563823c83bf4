#!/usr/bin/env node
// Benchmark (not a test) of `syncpi build` on this machine:
//   node bench/build.mjs [CONFIG] [--keep-cache] [--cold-twice] [--cold-previous]
// Prints the cold build time of the default appliance (empty cache: the Debian base layer, then
// the config's packages layer on it), the config-only rebuild time (same packages, another
// hostname) the previous way and today's, one more package (a new packages layer on the cached
// base) beside a whole cold build, which is what it cost before the base had a layer of its own,
// each with its steps; with --cold-twice a second cold build, whose .debs come from the cache; with
// --cold-previous a cold build with qemu's default CPU ("max") for the emulated programs, as before
// they ran on the Pi 4's core, beside today's, and its base and packages layers compared with
// today's entry by entry (bench/compare-base.mjs); and the image sizes:
// apparent, mapped blocks (what a flash writes) and .xz. CONFIG defaults to image/appliance.yaml; a built-in
// Plan is used only when image/appliance.yaml cannot be loaded. Needs root and the host tools of the build (see README).
import { mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

register();
const args = process.argv.slice(2);
const configPath = args.find((a) => !a.startsWith('--'));
const keepCache = args.includes('--keep-cache');
const coldTwice = args.includes('--cold-twice');
const coldPrevious = args.includes('--cold-previous');

const work = mkdtempSync(join(tmpdir(), 'syncpi-bench-'));
if (!keepCache) process.env.XDG_CACHE_HOME = join(work, 'cache');

const { buildImage } = await import('../src/image/build.ts');
const { formatBytes, formatDuration } = await import('../src/util/report.ts');

// The default appliance is image/appliance.yaml; it names the SSH key of whoever runs it, so a
// machine without one falls back to an equivalent hand-made Plan.
async function configPlan() {
  const { planFromFile } = await import('../src/plan/load.ts');
  const path = configPath ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'image', 'appliance.yaml');
  try {
    return planFromFile(path).plan;
  } catch (e) {
    if (configPath) throw e;
    process.stderr.write(`(image/appliance.yaml not usable here: ${e.message.split('\n')[0]}; using a built-in Plan)\n`);
    return undefined;
  }
}

async function planFor(hostname, morePackages = []) {
  const fromConfig = await configPlan();
  if (fromConfig) {
    if (morePackages.length) return { ...fromConfig, packages: { ...fromConfig.packages, install: [...fromConfig.packages.install, ...morePackages] }, configHash: `${fromConfig.configHash}-more` };
    if (!hostname) return fromConfig;
    // a config-only change: another hostname, same packages
    const files = fromConfig.files.map((f) => (f.path === '/etc/hostname' ? { ...f, content: `${hostname}\n` } : f));
    return { ...fromConfig, hostname, files, configHash: `${fromConfig.configHash}-${hostname}` };
  }
  const h = hostname ?? 'syncpi';
  return {
    format: 1, name: 'syncpi', hostname: h,
    base: { kind: 'debian', suite: 'trixie', arch: 'arm64' },
    configHash: `bench-${h}`,
    packages: { install: morePackages, purge: [], keep: [] },
    users: [{ name: 'pi', system: false, home: '/home/pi', shell: '/bin/bash', groups: ['sudo'], authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBenchBenchBenchBenchBenchBenchBen bench'], feature: 'system' }],
    dirs: [], files: [{ path: '/etc/hostname', mode: '0644', owner: 'root', group: 'root', content: `${h}\n`, notify: [], feature: 'system' }],
    units: { enable: ['syncthing@pi.service'], disable: [], mask: [] }, sysctls: {}, handlers: [], checks: [], notes: [],
  };
}

const quiet = {
  json: false,
  steps: [],
  async step(name, fn) {
    const t0 = Date.now();
    process.stderr.write(`… ${name}\n`);
    const r = await fn(() => {});
    this.steps.push([name, Date.now() - t0]);
    process.stderr.write(`  ${name}: ${formatDuration(Date.now() - t0)}\n`);
    return r;
  },
  infos: [],
  info(m) { this.infos.push(m); process.stderr.write(`${m}\n`); },
  warn(m) { process.stderr.write(`warning: ${m}\n`); },
  result() {},
};

try {
  const t0 = Date.now();
  const cold = await buildImage({ plan: await planFor(), outDir: join(work, 'out'), xz: true, reporter: quiet });
  const coldMs = Date.now() - t0;
  const coldSteps = quiet.steps.splice(0);
  quiet.infos.splice(0);
  // Config-only rebuilds: the previous way (converger tools emulated, locale-gen every time),
  // then today's twice: the first fills the locale cache unless an earlier build did.
  const rebuild = async (label, hostname, extra) => {
    const t = Date.now();
    const r = await buildImage({ plan: await planFor(hostname), outDir: join(work, `out-${hostname}`), reporter: quiet, ...extra });
    const cachedLocales = quiet.infos.splice(0).some((m) => m.startsWith('locales: '));
    return { label: `${label}${extra.emulatedConverger ? '' : cachedLocales ? ', locales from the cache' : ', locale-gen ran'}`, ms: Date.now() - t, reused: r.layer.reused, steps: quiet.steps.splice(0) };
  };
  const rebuilds = [
    await rebuild('previous: emulated converger tools, locale-gen every build', 'syncpi-2', { emulatedConverger: true }),
    await rebuild('native converger tools', 'syncpi-3', {}),
    await rebuild('native converger tools', 'syncpi-4', {}),
  ];
  // one more package: jq is in neither the recipe nor the default appliance
  const tMore = Date.now();
  const more = await buildImage({ plan: await planFor(undefined, ['jq']), outDir: join(work, 'out-more'), reporter: quiet });
  const moreMs = Date.now() - tMore;
  const moreSteps = quiet.steps.splice(0);
  quiet.infos.splice(0);
  let again;
  if (coldTwice) {
    const t = Date.now();
    const r = await buildImage({ plan: await planFor('syncpi-cold'), outDir: join(work, 'out-cold'), reporter: quiet, noCache: true });
    again = { ms: Date.now() - t, fetches: r.layer.bootstrap?.fetches, steps: quiet.steps.splice(0) };
  }
  let previous;
  if (coldPrevious) {
    // --no-cache replaces both layers: keep today's aside to compare
    const { layerPaths } = await import('../src/image/cache.ts');
    const today = { base: join(work, 'base-today.img'), packages: join(work, 'packages-today.img') };
    execFileSync('cp', ['--sparse=always', layerPaths(cold.layer.base.key).img, today.base]);
    execFileSync('cp', ['--sparse=always', layerPaths(cold.layer.key).img, today.packages]);
    const t = Date.now();
    process.env.SYNCPI_EMULATED_CPU = 'max';
    let r;
    try {
      r = await buildImage({ plan: await planFor('syncpi-previous'), outDir: join(work, 'out-previous'), reporter: quiet, noCache: true });
    } finally {
      delete process.env.SYNCPI_EMULATED_CPU;
    }
    const compare = (a, b) => execFileSync(process.execPath, ['--import', 'tsx', join(dirname(fileURLToPath(import.meta.url)), 'compare-base.mjs'), a, b], { encoding: 'utf8' }).trim().split('\n')[0];
    previous = {
      ms: Date.now() - t,
      bootstrap: r.layer.bootstrap ?? {},
      steps: quiet.steps.splice(0),
      compare: { base: compare(today.base, layerPaths(r.layer.base.key).img), packages: compare(today.packages, layerPaths(r.layer.key).img) },
    };
    quiet.infos.splice(0);
  }
  const b = cold.layer.bootstrap ?? {};
  const xzMs = coldSteps.find(([n]) => n.startsWith('compress'))?.[1];
  // the packages layer's own step ("install N and purge M package patterns"), both ways
  const packagesSteps = (before, now) => {
    const find = (steps) => steps.find(([n]) => n.startsWith('install '));
    const [p, q] = [find(before), find(now)];
    return p && q ? [`  packages layer: previous ${formatDuration(p[1])}, today ${formatDuration(q[1])} (${(q[1] / p[1]).toFixed(2)}×)`] : [];
  };
  // a cold build whose base was cached: its bootstrap, as recorded when the base was built, counted in
  const fullColdMs = coldMs + (cold.layer.base?.reused ? (b.mmdebstrapMs ?? 0) + (b.imageMs ?? 0) : 0);
  const lines = [
    `cold build${cold.layer.base?.reused ? ' (base layer was cached!)' : ''}: ${formatDuration(coldMs)}${xzMs ? `; ${formatDuration(coldMs - xzMs)} without the .xz, as \`syncpi build\` makes it by default` : ''}`,
    b.mmdebstrapMs !== undefined ? `  bootstrap of the base layer (mmdebstrap incl. initramfs): ${formatDuration(b.mmdebstrapMs)}, ${b.fetches} apt fetches` : '',
    b.initramfsMs !== undefined ? `  of which the one initramfs build: ${formatDuration(b.initramfsMs)}` : '',
    b.imageMs !== undefined ? `  image layout (mkfs, mcopy): ${formatDuration(b.imageMs)}` : '',
    ...(b.slowest ?? []).map((x) => `  package setup ${x.name}: ${formatDuration(x.ms)}`),
    ...coldSteps.filter(([n]) => !n.startsWith('bootstrap')).map(([n, ms]) => `  step ${n}: ${formatDuration(ms)}`),
    ...rebuilds.flatMap((r) => [
      `config-only rebuild, ${r.label} (layer ${r.reused ? 'reused' : 'NOT reused'}): ${formatDuration(r.ms)} (${(r.ms / rebuilds[0].ms).toFixed(2)}× the previous way)`,
      ...r.steps.map(([n, ms]) => `  step ${n}: ${formatDuration(ms)}`),
    ]),
    // before the base had a layer of its own, one more package was a whole cold build, bootstrap included
    `one more package (jq), base layer ${more.layer.base?.reused ? 'reused' : 'NOT reused'}: ${formatDuration(moreMs)} (${(moreMs / fullColdMs).toFixed(2)}× a cold build with its bootstrap, ${formatDuration(fullColdMs)}, what it cost before)`,
    ...moreSteps.map(([n, ms]) => `  step ${n}: ${formatDuration(ms)}`),
    ...(again
      ? [
          `second cold build (.debs from the cache): ${formatDuration(again.ms)} (${(again.ms / coldMs).toFixed(2)}× the first), ${again.fetches} apt fetches against ${b.fetches}`,
          ...again.steps.map(([n, ms]) => `  step ${n}: ${formatDuration(ms)}`),
        ]
      : []),
    ...(previous
      ? [
          `cold build, previous way (qemu's default CPU, "max"): ${formatDuration(previous.ms)}; today's ${formatDuration(coldMs)}${cold.layer.base?.reused ? ' (its base was cached)' : ''} (${(coldMs / previous.ms).toFixed(2)}×)`,
          `  bootstrap: previous ${formatDuration(previous.bootstrap.mmdebstrapMs ?? 0)}, today ${formatDuration(b.mmdebstrapMs ?? 0)} (${((b.mmdebstrapMs ?? 0) / (previous.bootstrap.mmdebstrapMs || 1)).toFixed(2)}×)`,
          ...packagesSteps(previous.steps, coldSteps),
          ...(previous.bootstrap.slowest ?? []).map((x) => `  previous package setup ${x.name}: ${formatDuration(x.ms)}`),
          `  the two base layers: ${previous.compare.base}`,
          `  the two packages layers: ${previous.compare.packages}`,
        ]
      : []),
    `image apparent size: ${formatBytes(cold.apparentBytes)} (${cold.apparentBytes} bytes)`,
    `image mapped blocks: ${formatBytes(cold.mappedBytes)} (${cold.mappedBytes} bytes)`,
    `image .xz: ${formatBytes(cold.xzBytes ?? 0)} (${cold.xzBytes} bytes)`,
  ].filter(Boolean);
  process.stdout.write(lines.join('\n') + '\n');
} finally {
  rmSync(work, { recursive: true, force: true });
}
