/** The one way commands turn a config path into a Plan: load, resolve secrets, compile. */
import { ConfigError, loadConfig, problemAt, type LoadedConfig } from '../config/load.js';
import { resolveInputs, SecretInputError, type ResolvedInputs, type ResolveOptions } from '../config/secrets.js';
import { compilePlan } from './compile.js';
import type { Plan } from './types.js';

export interface LoadedPlan {
  loaded: LoadedConfig;
  inputs: ResolvedInputs;
  plan: Plan;
}

export function planFromFile(path: string, opts: ResolveOptions = {}): LoadedPlan {
  const loaded = loadConfig(path);
  let inputs: ResolvedInputs;
  try {
    inputs = resolveInputs(loaded.config, loaded.file, opts);
  } catch (e) {
    if (e instanceof SecretInputError) throw new ConfigError([problemAt(loaded.yaml, e.path, e.detail)]);
    throw e;
  }
  const plan = compilePlan(loaded.config, inputs, { configDir: loaded.dir });
  return { loaded, inputs, plan };
}
