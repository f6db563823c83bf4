/** `syncpi fleet apply|check INVENTORY`: the appliance on many Pis, with per-host values. */
import path from 'node:path';
import type { Command } from 'commander';
import { EXIT_DRIFT, Failure, UserError } from '../util/errors.js';
import { parsePositiveInt } from './args.js';
import { addSshOptions, connectPolicy, type SshCliOptions } from './ssh-flags.js';

interface FleetCliOptions extends SshCliOptions {
  parallel: string;
  canary?: string;
  maxFail?: string;
  limit?: string;
  runDir?: string;
  secrets?: string;
  json?: boolean;
  diff: boolean;
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
}

async function fleetAction(inventoryPath: string, opts: FleetCliOptions, check: boolean): Promise<void> {
  const { loadInventory, selectHosts } = await import('../fleet/inventory.js');
  const { prepare } = await import('../provision/prepare.js');
  const { applyToHost } = await import('../provision/host.js');
  const { describeReport } = await import('../provision/report.js');
  const { runFleet } = await import('../fleet/run.js');
  const { summaryTable, fleetJson } = await import('../fleet/report.js');
  const parallel = parsePositiveInt('--parallel', opts.parallel, 256);
  const canary = opts.canary !== undefined ? parsePositiveInt('--canary', opts.canary, 100000) : undefined;
  const maxFail = opts.maxFail !== undefined ? parsePositiveInt('--max-fail', opts.maxFail, 100000) : undefined;
  const policy = connectPolicy(opts);

  const inv = loadInventory(inventoryPath);
  const hosts = selectHosts(inv, opts.limit);
  if (hosts.length === 0) throw new UserError(`--limit ${opts.limit}: no host of ${inventoryPath} matches`);

  // Every host's plan is compiled before any host is touched: bad values stop the run up front.
  const prepared = new Map<string, Awaited<ReturnType<typeof prepare>>>();
  for (const h of hosts) {
    const p = await prepare(inv.appliance, { vars: h.values, varsOrigin: `host ${h.name} in ${path.basename(inv.file)}`, ...(opts.secrets ? { secretsFile: opts.secrets } : {}) });
    for (const a of p.announcements) process.stderr.write(`${h.name}: ${a}\n`);
    prepared.set(h.name, p);
  }

  const runDir = path.resolve(opts.runDir ?? path.join(path.dirname(inv.file), 'syncpi-runs', `${timestamp()}-${check ? 'check' : 'apply'}`));
  const display = opts.json ? 'json' : process.stderr.isTTY ? 'tty' : 'lines';
  const result = await runFleet(
    hosts,
    async (h, ctx) => {
      const r = await applyToHost(h, prepared.get(h.name)!.archive, {
        check,
        policy,
        onConnected: () => ctx.setState(check ? 'checking' : 'applying'),
        onRecord: (kind, step) => {
          if (kind === 'STEP') ctx.setState(`${check ? 'checking' : 'applying'}: ${step}`);
        },
        onOutput: (chunk, stream) => ctx.log.write(stream === 'stderr' ? `[stderr] ${chunk.toString()}` : chunk),
      });
      ctx.log.write(describeReport(r).join('\n') + '\n');
      return r;
    },
    { parallel, canary, maxFail, runDir, display },
  );

  if (opts.json) {
    process.stdout.write(JSON.stringify({ type: 'result', data: fleetJson(result), ts: Date.now() }) + '\n');
  } else {
    if (check) {
      for (const r of result.reports) {
        if (r.status !== 'changed') continue;
        process.stdout.write(`${r.name}: drift\n${describeReport(r, { diffs: opts.diff }).join('\n')}\n`);
      }
    }
    for (const r of result.reports.filter((x) => x.status === 'failed')) process.stdout.write(`${r.name}: FAILED\n${describeReport(r, { diffs: false }).join('\n')}\n`);
    process.stdout.write(summaryTable(result) + '\n');
  }
  const failed = result.reports.filter((r) => r.status === 'failed' || r.status === 'skipped');
  if (failed.length) {
    const allBadInput = result.reports.every((r) => r.status !== 'failed' || r.error?.exitCode === 2) && !result.stopped;
    const msg = `${result.reports.filter((r) => r.status === 'failed').length} of ${result.reports.length} host(s) failed${result.stopped ? ` (stopped: ${result.stopped})` : ''}; logs in ${result.runDir}`;
    throw allBadInput ? new UserError(msg) : new Failure(msg);
  }
  if (check && result.reports.some((r) => r.status === 'changed')) process.exitCode = EXIT_DRIFT;
}

export function register(program: Command): void {
  const fleet = program.command('fleet').description('apply or check the appliance on every Pi of an inventory');
  const common = (c: Command): Command =>
    addSshOptions(
      c
        .argument('<inventory>', 'fleet inventory (hosts, groups, per-host values; see image/fleet.yaml)')
        .option('--parallel <n>', 'hosts worked on at once', '8')
        .option('--limit <names>', 'only these hosts or groups (comma-separated)')
        .option('--run-dir <dir>', 'where per-host logs and report.json go (default: syncpi-runs/TIME beside the inventory)')
        .option('--secrets <file>', 'secrets file (default: beside appliance.yaml)')
        .option('--json', 'print one JSON event per line, ending with the fleet report')
        .option('--no-diff', 'do not print file diffs'),
      false,
    );
  common(fleet.command('apply').description('apply to every host (idempotent)'))
    .option('--canary <n>', 'apply to the first N hosts first; stop if any of them fails')
    .option('--max-fail <n>', 'stop starting new hosts once N have failed')
    .action((inv: string, opts: FleetCliOptions) => fleetAction(inv, opts, false));
  common(fleet.command('check').description('report drift on every host (what apply would change); changes nothing'))
    .addHelpText('after', `\nExit codes: 0 no drift, ${EXIT_DRIFT} drift found, 1 a host failed, 2 bad input.`)
    .action((inv: string, opts: FleetCliOptions) =>
    fleetAction(inv, opts, true),
  );
}
