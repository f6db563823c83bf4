/**
 * From appliance.yaml (plus a host's inventory values) to the one archive sent to that host.
 * Pure local work: nothing here touches a target.
 */
import type { Plan } from '../plan/types.js';
import type { Config } from '../config/schema.js';
import { ConfigError, loadConfig, parseConfigData, readYaml, type LoadedConfig, type LoadedYaml } from '../config/load.js';
import { resolveInputs } from '../config/secrets.js';
import { compilePlan } from '../plan/compile.js';
import { UserError } from '../util/errors.js';
import { archiveOf, type BundleArchive } from '../targets/apply.js';

export interface Prepared {
  plan: Plan;
  archive: BundleArchive;
  /** Messages to show once (e.g. a generated panel password). */
  announcements: string[];
  config: Config;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Inventory values over the appliance: mappings merge key by key, anything else replaces. */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isObject(base) || !isObject(over)) return over === undefined ? base : structuredClone(over);
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = k in base ? deepMerge(base[k], v) : structuredClone(v);
  return out;
}

export interface PrepareOptions {
  /** Values merged over the appliance config (fleet: defaults ← groups ← host). */
  vars?: Record<string, unknown>;
  /** Name shown in errors about merged values, e.g. `host pi3 in fleet.yaml`. */
  varsOrigin?: string;
  secretsFile?: string;
  /** Create missing secrets (default true); status passes false and reads what exists. */
  generate?: boolean;
}

/** The appliance config of one host: appliance.yaml with the host's inventory values merged over it. */
export function loadHostConfig(configPath: string, o: Pick<PrepareOptions, 'vars' | 'varsOrigin'> = {}): LoadedConfig {
  if (o.vars && Object.keys(o.vars).length) {
    const yaml: LoadedYaml = readYaml(configPath);
    const merged: LoadedYaml = { ...yaml, data: deepMerge(yaml.data, o.vars) };
    try {
      const config = parseConfigData(merged);
      return { config, file: yaml.file, dir: yaml.file.replace(/\/[^/]*$/, '') || '/', yaml: merged };
    } catch (e) {
      if (e instanceof ConfigError && o.varsOrigin) {
        throw new UserError(`${e.message} (after merging the values of ${o.varsOrigin})`, e.details);
      }
      throw e;
    }
  }
  return loadConfig(configPath);
}

export async function prepare(configPath: string, o: PrepareOptions = {}): Promise<Prepared> {
  const loaded = loadHostConfig(configPath, o);
  const inputs = resolveInputs(loaded.config, loaded.file, { ...(o.secretsFile ? { secretsFile: o.secretsFile } : {}), ...(o.generate === false ? { generate: false } : {}) });
  const plan = compilePlan(loaded.config, inputs, { configDir: loaded.dir });
  return { plan, archive: await archiveOf(plan), announcements: inputs.announcements, config: loaded.config };
}
