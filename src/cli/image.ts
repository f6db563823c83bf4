/**
 * `syncpi image test IMAGE --config CONFIG`: boot a built image in qemu-system-aarch64 and prove
 * the appliance works — the Plan's checks over SSH, then a boot without the drive, then with it
 * again. `--machine raspi3b` boots it on an emulated Raspberry Pi 3 B instead and judges the
 * boot from the serial console. One line per check; exit 1 on any failure.
 */
import type { Command } from 'commander';
import { Failure } from '../util/errors.js';
import { parsePositiveInt } from './args.js';

interface ImageTestFlags {
  config: string;
  secrets?: string;
  identity?: string[];
  bootTimeout?: string;
  machine: string;
  keep?: boolean;
  quick?: boolean;
  outsideNetwork?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  const image = program.command('image').description('work with built SD images');
  image
    .command('test')
    .description('boot IMAGE in QEMU with a virtual drive and run the appliance checks (then boot without the drive, and with it again)')
    .argument('<image>', 'the .img that `syncpi build` wrote')
    .requiredOption('-c, --config <file>', 'the appliance.yaml the image was built from')
    .option('--secrets <file>', 'secrets file (default: CONFIG.secrets.yaml beside the config)')
    .option('-i, --identity <file>', 'private key for the config\'s user (repeatable; default: ssh-agent and ~/.ssh/id_*)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--machine <board>', 'virt (SSH and the plan\'s checks, boots with and without the drive) or raspi3b (a Raspberry Pi 3 B: its SD host, UART and USB; judged from the serial console)', 'virt')
    .option('--boot-timeout <seconds>', 'longest a boot may take until SSH answers (raspi3b: until multi-user) (default: 300; raspi3b 1200)')
    .option('--quick', 'one boot with the drive only')
    .option('--outside-network', 'let the VM reach beyond this machine (NTP, apt); by default it reaches only the forwarded ports')
    .option('--keep', 'keep the scratch directory (disk overlay, serial console logs)')
    .option('--json', 'print progress and the results as JSON lines')
    .action(async (img: string, flags: ImageTestFlags) => {
      const { existsSync } = await import('node:fs');
      const { UserError } = await import('../util/errors.js');
      if (!existsSync(img)) throw new UserError(`${img}: no such image`);
      const { MACHINES } = await import('../vm/qemu.js');
      const machine = MACHINES.find((m) => m === flags.machine);
      if (!machine) throw new UserError(`--machine "${flags.machine}" is not a board the image test emulates: use ${MACHINES.join(' or ')}`);
      const timeout = parsePositiveInt('--boot-timeout', flags.bootTimeout ?? (machine === 'raspi3b' ? '1200' : '300'), 3600);
      const { planFromFile } = await import('../plan/load.js');
      const { createReporter, formatDuration } = await import('../util/report.js');
      const { runImageTest } = await import('../vm/image-test.js');
      const { panelCredentials } = await import('./verify.js');
      const reporter = createReporter({ json: !!flags.json });
      const { plan, loaded, inputs } = planFromFile(flags.config, flags.secrets ? { secretsFile: flags.secrets } : {});
      if (plan.base.arch !== 'arm64') throw new UserError(`${flags.config}: the image test boots arm64 images; this config builds ${plan.base.arch}`);
      const r = await runImageTest({
        image: img,
        plan,
        panel: panelCredentials(loaded, inputs),
        ...(flags.identity ? { identities: flags.identity } : {}),
        bootTimeoutMs: timeout * 1000,
        reporter,
        keep: !!flags.keep,
        quick: !!flags.quick,
        outsideNetwork: !!flags.outsideNetwork,
        machine,
      });
      const failed = r.outcomes.filter((x) => x.status === 'fail');
      const passed = r.outcomes.filter((x) => x.status === 'pass').length;
      if (reporter.json) {
        reporter.result({ passed, failed: failed.length, bootMs: r.bootMs, totalMs: r.totalMs, outcomes: r.outcomes, ...(r.workDir ? { workDir: r.workDir } : {}) });
      } else {
        const lines = r.outcomes.map((x) => `${x.status.toUpperCase().padEnd(5)} [${x.phase}] ${x.check.description}${x.detail ? ` — ${x.detail}` : ''}`);
        lines.push(
          `boot to ${machine === 'raspi3b' ? 'multi-user' : 'SSH'}: ${Object.entries(r.bootMs).map(([k, v]) => `${k} ${formatDuration(v)}`).join(', ')}; total ${formatDuration(r.totalMs)}`,
          `${passed} passed, ${failed.length} failed, ${r.outcomes.length - passed - failed.length} skipped`,
          ...(r.workDir ? [`scratch directory kept: ${r.workDir}`] : []),
        );
        process.stdout.write(lines.join('\n') + '\n');
      }
      if (failed.length) throw new Failure(`image test: ${failed.length} check(s) failed`);
    });
}
