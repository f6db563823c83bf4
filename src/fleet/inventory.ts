/**
 * Fleet inventory: which Pis, how to reach them, and the values each merges over the shared
 * appliance config. Shape (see image/fleet.yaml):
 *
 *   appliance: ./appliance.yaml            # relative to the inventory
 *   defaults: { user, port, values }       # for every host
 *   groups:   { NAME: { values, hosts: [HOST…] } }
 *   hosts:    { NAME: { address, user, port, groups: [GROUP…], values } }
 *
 * Values merge appliance ← defaults ← each group (in the host's `groups` order, then groups that
 * list the host in their `hosts`) ← the host: mappings key by key, lists and scalars replace.
 */
import { dirname, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, issuesToProblems, readYaml } from '../config/load.js';
import { checkHostAddress } from '../config/validators.js';
import { UserError } from '../util/errors.js';
import { deepMerge } from '../provision/prepare.js';
import type { HostSpec } from '../provision/host.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const name = () => z.string().regex(NAME, 'expected a name of letters, digits and . _ - (at most 63)');
const values = z.record(z.string(), z.unknown()).default({}).describe('Appliance config values merged over appliance.yaml.');
const user = z.string().regex(/^[a-z_][a-z0-9_.-]{0,31}$/, 'expected a login name such as pi or root');
const port = z.number().int().min(1).max(65535);

export const InventorySchema = z.strictObject({
  appliance: z.string().min(1).describe('Path of appliance.yaml, relative to this file.'),
  defaults: z
    // Unset user/port leave the SSH config's (then pi and 22) to apply when connecting.
    .strictObject({ user: user.optional(), port: port.optional(), values })
    .default({ values: {} }),
  groups: z.record(name(), z.strictObject({ values, hosts: z.array(name()).default([]) })).default({}),
  hosts: z
    .record(
      name(),
      z.strictObject({
        address: z.string().refine((s) => checkHostAddress(s) === null, { message: 'expected a DNS name or an IP address' }),
        user: user.optional(),
        port: port.optional(),
        groups: z.array(name()).default([]),
        values,
      }),
    )
    .refine((h) => Object.keys(h).length > 0, 'expected at least one host'),
});

export type InventoryData = z.output<typeof InventorySchema>;

export interface InventoryHost extends HostSpec {
  groups: string[];
  /** Merged values (defaults ← groups ← host), to merge over the appliance config. */
  values: Record<string, unknown>;
}

export interface Inventory {
  file: string;
  appliance: string;
  hosts: InventoryHost[];
}

export function loadInventory(path: string): Inventory {
  const y = readYaml(path);
  const parsed = InventorySchema.safeParse(y.data);
  if (!parsed.success) throw new ConfigError(issuesToProblems(y, parsed.error.issues, InventorySchema));
  const inv = parsed.data;
  const problems: string[] = [];
  for (const [g, def] of Object.entries(inv.groups)) {
    for (const h of def.hosts) if (!(h in inv.hosts)) problems.push(`${y.shownAs}: groups.${g}.hosts: "${h}" is not a host of this inventory (hosts: ${Object.keys(inv.hosts).join(', ')})`);
  }
  const hosts: InventoryHost[] = [];
  for (const [n, h] of Object.entries(inv.hosts)) {
    for (const g of h.groups) if (!(g in inv.groups)) problems.push(`${y.shownAs}: hosts.${n}.groups: "${g}" is not a group of this inventory (groups: ${Object.keys(inv.groups).join(', ') || 'none'})`);
    const member = [...h.groups, ...Object.entries(inv.groups).filter(([g, d]) => d.hosts.includes(n) && !h.groups.includes(g)).map(([g]) => g)];
    let merged: unknown = inv.defaults.values;
    for (const g of member) merged = deepMerge(merged, inv.groups[g]?.values ?? {});
    merged = deepMerge(merged, h.values);
    hosts.push({ name: n, address: h.address, user: h.user ?? inv.defaults.user, port: h.port ?? inv.defaults.port, groups: member, values: merged as Record<string, unknown> });
  }
  if (problems.length) throw new UserError(problems.length === 1 ? problems[0]! : `${problems.length} problems in ${y.shownAs}:`, problems.length === 1 ? [] : problems);
  const appliance = resolve(dirname(y.file), inv.appliance);
  if (!existsSync(appliance)) throw new UserError(`${y.shownAs}: appliance: ${appliance} does not exist; expected the path of appliance.yaml relative to the inventory`);
  return { file: y.file, appliance, hosts };
}

/** `--limit a,b` / group names: the hosts to act on, in inventory order. */
export function selectHosts(inv: Inventory, limit?: string): InventoryHost[] {
  if (!limit) return inv.hosts;
  const want = limit.split(',').map((s) => s.trim()).filter(Boolean);
  const known = new Set([...inv.hosts.map((h) => h.name), ...inv.hosts.flatMap((h) => h.groups)]);
  for (const w of want) if (!known.has(w)) throw new UserError(`--limit: "${w}" is neither a host nor a group of ${inv.file}`);
  return inv.hosts.filter((h) => want.includes(h.name) || h.groups.some((g) => want.includes(g)));
}
