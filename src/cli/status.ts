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
    const { formatBytes } = await import('../util/report.js');
    const parallel = parsePositiveInt('--parallel', opts.parallel, 256);
    const minFreePercent = opts.minFree === undefined ? undefined : parsePositiveInt('--min-free', opts.minFree, 99);
    const inv = loadInventory(inventoryPath);
    const hosts = selectHosts(inv, opts.limit);
    const policy = connectPolicy(opts);

    // Status needs no local secret: each appliance's REST key is read on the appliance itself.
    const jobs = hosts.map((h) => ({ h, config: loadHostConfig(inv.appliance, { vars: h.values, varsOrigin: `host ${h.name} in ${path.basename(inv.file)}` }).config }));
    const results: Awaited<ReturnType<typeof hostStatus>>[] = new Array(jobs.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(parallel, jobs.length) }, async () => {
        while (next < jobs.length) {
          const i = next++;
          const j = jobs[i]!;
          results[i] = await hostStatus(j.h, j.config, policy, minFreePercent === undefined ? {} : { minFreePercent });
        }
      }),
    );

    if (opts.json) process.stdout.write(JSON.stringify({ hosts: results }, null, 2) + '\n');
    else {
      const rows = results.map((r) => [
        r.name,
        r.reachable ? (r.ok ? 'ok' : 'ATTENTION') : 'UNREACHABLE',
        r.daemon ?? '-',
        r.folders.length ? `${r.folders.filter((f) => f.inSync).length}/${r.folders.length} in sync` : '-',
        r.drive ? (r.drive.mounted ? `mounted, ${formatBytes(r.drive.freeBytes ?? 0)} free` : 'NOT MOUNTED') : '-',
        r.rootFreeBytes ? formatBytes(r.rootFreeBytes) : '-',
        r.health ? healthCell(r.health) : '-',
        r.error ?? [
          ...r.folders.filter((f) => !f.inSync).map((f) => `${f.id}: ${f.held ? `HELD BACK: ${f.held}` : (f.error ?? (f.fileErrors ? `${f.fileErrors} file(s) failed to sync` : `${f.state}, ${f.needFiles} files to sync`))}`),
          ...(r.health ? healthDetail(r.health) : []),
        ].join('; '),
      ]);
      const head = ['HOST', 'STATUS', 'DAEMON', 'FOLDERS', 'DRIVE', 'ROOT FREE', 'HEALTH', 'DETAIL'];
      const w = head.map((x, i) => Math.max(x.length, ...rows.map((r) => r[i]!.length)));
      for (const r of [head, ...rows]) process.stdout.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ').trimEnd() + '\n');
    }
    const bad = results.filter((r) => !r.ok);
    if (bad.length) throw new Failure(`${bad.length} of ${results.length} host(s) need attention: ${bad.map((r) => r.name).join(', ')}`);
  });
}

type Health = NonNullable<import('../fleet/status.js').HostStatusReport['health']>;

/** SMART, free space and power in a few words: "SMART healthy, 12% free, power ok". */
function healthCell(h: Health): string {
  const free = h.storage.freeBytes !== undefined && h.storage.sizeBytes ? `${Math.floor((h.storage.freeBytes / h.storage.sizeBytes) * 100)}% free` : 'free ?';
  const power = h.power.sources.length === 0 ? 'power ?' : h.power.undervoltage ? 'UNDERVOLTAGE' : h.power.throttled ? 'throttled' : 'power ok';
  return `SMART ${h.smart.state === 'healthy' || h.smart.state === 'unavailable' ? h.smart.state : h.smart.state.toUpperCase()}, ${h.storage.low ? `LOW: ${free}` : free}, ${power}`;
}

function healthDetail(h: Health): string[] {
  const out: string[] = [];
  if (h.smart.state === 'failing' || h.smart.state === 'warning') out.push(`drive: ${h.smart.reason}`);
  if (h.storage.low) out.push(`${h.storage.path}: less than ${h.storage.minFreePercent}% free`);
  if (h.power.undervoltage || h.power.throttled) out.push(`power: ${h.power.reason}`);
  return out;
}
