/** `syncpi validate CONFIG`: schema and cross-field checks, all problems at once, exit 2 on any. */
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('validate')
    .description('check an appliance.yaml and report every problem with file:line:col')
    .argument('<config>', 'path to appliance.yaml')
    .option('--json', 'print the validated config (defaults filled in) as JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const { loadConfig } = await import('../config/load.js');
      const { config, yaml } = loadConfig(file);
      if (opts.json) process.stdout.write(JSON.stringify(config, null, 2) + '\n');
      else process.stdout.write(`${yaml.shownAs}: valid\n`);
    });
}
