/** `syncpi schema`: the JSON Schemas editors use to check and complete appliance.yaml and fleet inventories. */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Command } from 'commander';

async function inventorySchema(): Promise<unknown> {
  const { z } = await import('zod');
  const { InventorySchema } = await import('../fleet/inventory.js');
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'urn:syncpi:fleet',
    title: 'syncpi fleet inventory',
    ...(z.toJSONSchema(InventorySchema, { io: 'input', unrepresentable: 'any' }) as object),
  };
}

export function register(program: Command): void {
  program
    .command('schema')
    .description('print (or write) the JSON Schema of appliance.yaml, or of a fleet inventory')
    .option('--inventory', 'the fleet inventory schema instead')
    .option('--out <file>', 'write it to this file instead of stdout')
    .action(async (opts: { out?: string; inventory?: boolean }) => {
      const text = JSON.stringify(opts.inventory ? await inventorySchema() : (await import('../config/schema.js')).jsonSchema(), null, 2) + '\n';
      if (!opts.out) {
        process.stdout.write(text);
        return;
      }
      mkdirSync(dirname(opts.out), { recursive: true });
      writeFileSync(`${opts.out}.tmp`, text);
      renameSync(`${opts.out}.tmp`, opts.out);
    });
}
