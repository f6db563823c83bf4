/** `syncpi status INVENTORY`: daemon, folders, drive and free space of every Pi, at a glance. */
import path from 'node:path';
import type { Command } from 'commander';
import { Failure } from '../util/errors.js';
import { parsePositiveInt } from './args.js';
import { addSshOptions, connectPolicy, type SshCliOptions } from './ssh-flags.js';

export function register(program: Command): void {
  addSshOptions(
    program
      .command('status')
      .description('per host: sync daemon up, folders in sync (REST API through SSH), drive mounted, free space')
      .argument('<inventory>', 'fleet inventory (see image/fleet.yaml)')
      .option('--parallel <n>', 'hosts queried at once', '16')
      .option('--limit <names>', 'only these hosts or groups (comma-separated)')
      .option('--min-free <percent>', 'free space below this share of the storage needs attention (default: the config\'s health.min_free_percent, 10)')
      .option('--json', 'print the report as JSON'),
    false,
  ).action(async (inventoryPath: string, opts: SshCliOptions & { parallel: string; limit?: string; minFree?: string; json?: boolean }) => {
    const { loadInventory, selectHosts } = await import('../fleet/inventory.js');
    const { loadHostConfig } = await import('../provision/prepare.js');
    const { hostStatus } = await import('../fleet/status.js');
    const { boundedPool } = await import('../fleet/run.js');
    const { statusTable } = await import('../fleet/status-table.js');
    const parallel = parsePositiveInt('--parallel', opts.parallel, 256);
    const minFreePercent = opts.minFree === undefined ? undefined : parsePositiveInt('--min-free', opts.minFree, 99);
    const policy = connectPolicy(opts);
    const inv = loadInventory(inventoryPath);
    const hosts = selectHosts(inv, opts.limit);

    // Status needs no local secret: each appliance's REST key is read on the appliance itself.
    const jobs = hosts.map((h) => ({ h, config: loadHostConfig(inv.appliance, { vars: h.values, varsOrigin: `host ${h.name} in ${path.basename(inv.file)}` }).config }));
    const results: Awaited<ReturnType<typeof hostStatus>>[] = new Array(jobs.length);
    await boundedPool(jobs, parallel, async (j, i) => {
      results[i] = await hostStatus(j.h, j.config, policy, minFreePercent === undefined ? {} : { minFreePercent });
    });

    process.stdout.write(opts.json ? JSON.stringify({ hosts: results }, null, 2) + '\n' : statusTable(results));
    const bad = results.filter((r) => !r.ok);
    if (bad.length) throw new Failure(`${bad.length} of ${results.length} host(s) need attention: ${bad.map((r) => r.name).join(', ')}`);
  });
}
