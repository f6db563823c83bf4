/** `syncpi schema`: the JSON Schema editors use to check and complete appliance.yaml. */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { jsonSchema } from '../config/schema.js';

export function register(program: Command): void {
  program
    .command('schema')
    .description('print (or write) the JSON Schema of appliance.yaml')
    .option('--out <file>', 'write it to this file instead of stdout')
    .action((opts: { out?: string }) => {
      const text = JSON.stringify(jsonSchema(), null, 2) + '\n';
      if (!opts.out) {
        process.stdout.write(text);
        return;
      }
      mkdirSync(dirname(opts.out), { recursive: true });
      writeFileSync(`${opts.out}.tmp`, text);
      renameSync(`${opts.out}.tmp`, opts.out);
    });
}
