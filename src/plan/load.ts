/** The one way commands turn a config path into a Plan: load, resolve secrets, compile. */
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { resolveInputs, type ResolvedInputs, type ResolveOptions } from '../config/secrets.js';
import { compilePlan } from './compile.js';
import type { Plan } from './types.js';

export interface LoadedPlan {
  loaded: LoadedConfig;
  inputs: ResolvedInputs;
  plan: Plan;
}

export function planFromFile(path: string, opts: ResolveOptions = {}): LoadedPlan {
  const loaded = loadConfig(path);
  const inputs = resolveInputs(loaded.config, loaded.file, opts);
  const plan = compilePlan(loaded.config, inputs, { configDir: loaded.dir });
  return { loaded, inputs, plan };
}
