/** `syncpi plan CONFIG`: what the appliance consists of, without touching any system or file. */
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('plan')
    .description('compute the plan (files, packages, units, checks) for a config and print it')
    .argument('<config>', 'path to appliance.yaml')
    .option('--json', 'print the full plan as JSON (secret file contents redacted)')
    .option('--show-secrets', 'with --json: include secret file contents')
    .option('--secrets <file>', 'secrets file (default: CONFIG.secrets.yaml beside the config)')
    .action(async (file: string, opts: { json?: boolean; showSecrets?: boolean; secrets?: string }) => {
      const { planFromFile } = await import('../plan/load.js');
      const { redactPlan, summarisePlan } = await import('../plan/summary.js');
      // A preview: secrets not generated yet show as placeholders; nothing is written.
      const { plan, inputs } = planFromFile(file, { preview: true, ...(opts.secrets ? { secretsFile: opts.secrets } : {}) });
      for (const a of inputs.announcements) process.stderr.write(`${a}\n`);
      if (opts.json) process.stdout.write(JSON.stringify(opts.showSecrets ? plan : redactPlan(plan), null, 2) + '\n');
      else process.stdout.write(summarisePlan(plan));
    });
}
