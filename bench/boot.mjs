#!/usr/bin/env node
// Benchmark (not a test) of the appliance booted in qemu-system-aarch64 (TCG) on this machine:
//   node bench/boot.mjs [IMAGE --config CONFIG --identity KEY] [--sizes] [--raspi3b]
// Prints boot-to-SSH and boot-to-sync-ready times (sync-ready: Syncthing's REST API answers through
// the forwarded panel port), for a first boot and a second boot of the same disk. Without IMAGE the
// default appliance is built first (from the build cache when it is warm). --sizes also builds the
// default appliance without stripping (packages.profile none, no remove list) and prints both
// image sizes. --raspi3b also boots it on an emulated Raspberry Pi 3 B (-M raspi3b: no network,
// so the figure is boot to multi-user, read from the serial console). Needs root and the host tools of the build and image test (see README).
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { register } from 'tsx/esm/api';
import { $ } from 'zx';

register();
const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const image = args.find((a, i) => !a.startsWith('--') && !['--config', '--identity'].includes(args[i - 1] ?? ''));
const sizes = args.includes('--sizes');
const raspi3b = args.includes('--raspi3b');

const { withCleanup } = await import('../src/util/cleanup.ts');
const { bootVm, makeDriveImage } = await import('../src/vm/qemu.ts');
const { CONSOLE_UNIT_LOG } = await import('../src/vm/console.ts');
const { formatBytes, formatDuration } = await import('../src/util/report.ts');
const helpers = await import('../test/helpers/appliance-image.ts');

const work = mkdtempSync(join(tmpdir(), 'syncpi-bootbench-'));

/** Syncthing answers /rest/noauth/health with {"status":"OK"} once it serves its API. */
function health(port) {
  return new Promise((res) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/rest/noauth/health', rejectUnauthorized: false, timeout: 3000 }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => res(r.statusCode === 200 && body.includes('OK')));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => res(false));
  });
}

async function bootOnce(img, drive, name, overlay) {
  return withCleanup(async (scope) => {
    const t0 = Date.now();
    const vm = await bootVm(scope, { image: img, workDir: work, drive, name, overlay, bootTimeoutMs: 600_000 });
    let readyMs;
    while (Date.now() - t0 < 600_000) {
      if (await health(vm.ports.panel)) {
        readyMs = Date.now() - t0;
        break;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    await vm.stop();
    return { sshMs: vm.bootMs, readyMs, overlay: vm.overlay };
  });
}

try {
  let img = image;
  let built;
  if (!img) {
    const key = await helpers.makeTestKey(work);
    const config = await helpers.writeTestConfig(work, key);
    built = await helpers.buildTestAppliance(work, config, key);
    img = built.img;
  }
  const drive = join(work, 'drive.img');
  await makeDriveImage(drive, 'SYNCDRIVE');
  const first = await bootOnce(img, drive, 'first');
  const second = await bootOnce(img, drive, 'second', first.overlay);
  const fmt = (ms) => (ms === undefined ? 'not within 600 s' : formatDuration(ms));
  const lines = [
    `image: ${img}`,
    `first boot:  SSH ${fmt(first.sshMs)}, sync-ready ${fmt(first.readyMs)} (includes first-boot work: host keys, TLS certificate, root growth)`,
    `second boot: SSH ${fmt(second.sshMs)}, sync-ready ${fmt(second.readyMs)}`,
    `(qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024, TCG on this machine)`,
  ];
  if (raspi3b) {
    const ms = await withCleanup(async (scope) => {
      const vm = await bootVm(scope, {
        image: img, workDir: work, drive, name: 'raspi3b', machine: 'raspi3b', bootTimeoutMs: 1_800_000,
        readyOnSerial: /systemd\[1\]: Reached target multi-user\.target/, extraCmdline: CONSOLE_UNIT_LOG,
      });
      await vm.stop();
      return vm.bootMs;
    });
    lines.push(`raspi3b first boot: multi-user ${formatDuration(ms)} (qemu-system-aarch64 -M raspi3b: 4 × Cortex-A53, 1 GiB, TCG)`);
  }
  if (sizes) {
    const { statSync } = await import('node:fs');
    const { mkdirSync } = await import('node:fs');
    const plainDir = join(work, 'plain');
    mkdirSync(plainDir);
    const key = await helpers.makeTestKey(plainDir);
    const plainConfig = await helpers.writeTestConfig(plainDir, key, (doc) => {
      doc.setIn(['packages', 'profile'], 'none');
      doc.setIn(['packages', 'remove'], []);
    });
    const plain = await helpers.buildTestAppliance(plainDir, plainConfig, key);
    const mapped = async (f) => Number((await $({ quiet: true })`du -B1 ${f}`).stdout.split('\t')[0]);
    const row = async (label, f) => `${label}: ${formatBytes(statSync(f).size)} apparent, ${formatBytes(await mapped(f))} allocated`;
    lines.push(await row('stripped (headless)', img), await row('not stripped      ', plain.img));
  }
  process.stdout.write(lines.join('\n') + '\n');
} finally {
  rmSync(work, { recursive: true, force: true });
}
