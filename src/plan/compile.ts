/**
 * Config + inputs + templates → Plan. Pure: reads only template files, touches no system, and
 * the same input gives the same bytes (everything is sorted; nothing depends on time or order
 * of object keys in the YAML).
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import type { ResolvedInputs } from '../config/secrets.js';
import { templatesDir } from '../util/paths.js';
import { makeContext, type Contribution, type Feature } from './context.js';
import { authorizedKeysItems, sysctlItems } from './derived-files.js';
import { drive } from './features/drive.js';
import { firstboot } from './features/firstboot.js';
import { hardening } from './features/hardening.js';
import { health } from './features/health.js';
import { filterPurge, packages } from './features/packages.js';
import { panel } from './features/panel.js';
import { readers } from './features/readers.js';
import { rsync } from './features/rsync.js';
import { services } from './features/services.js';
import { sync } from './features/sync.js';
import { system } from './features/system.js';
import { web } from './features/web.js';
import type { Plan, PlanFile, PlanHandler } from './types.js';

export const FEATURES: Feature[] = [system, packages, sync, readers, panel, drive, services, web, hardening, rsync, health, firstboot];

const DAEMON_RELOAD: PlanHandler = { name: 'daemon-reload', action: 'daemon-reload', liveOnly: true };

/** Canonical JSON: keys sorted at every level, so hashes do not depend on YAML key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

export interface CompileOptions {
  /** The config file's folder: templates_dir resolves against it. */
  configDir: string;
}

export function compilePlan(config: Config, inputs: ResolvedInputs, opts: CompileOptions): Plan {
  const templates = {
    builtin: templatesDir(),
    ...(config.templates_dir ? { override: resolve(opts.configDir, config.templates_dir) } : {}),
  };
  const ctx = makeContext(config, inputs, templates);
  const plan: Plan = {
    format: 1,
    name: config.name ?? config.system.hostname,
    hostname: config.system.hostname,
    base: 'debian' in config.base
      ? { kind: 'debian', suite: config.base.debian.suite, arch: config.base.debian.arch, ...(config.base.debian.mirror ? { mirror: config.base.debian.mirror } : {}) }
      : { kind: 'image', arch: config.base.image.arch, source: config.base.image.source, sha256: config.base.image.sha256 },
    configHash: createHash('sha256').update(canonicalJson(config)).digest('hex'),
    packages: { install: [], purge: [], keep: [...config.packages.keep].sort() },
    users: [],
    dirs: [],
    files: [],
    units: { enable: [], disable: [], mask: [] },
    sysctls: {},
    kernelParams: {},
    handlers: [],
    checks: [],
    notes: [],
    models: [...(config.hardware?.models ?? [])],
  };
  const owners = new Map<string, string>();
  const install = new Set<string>();
  const purge: string[] = [];
  const handlers = new Map<string, PlanHandler>();
  const addFiles = (files: PlanFile[]): void => {
    for (const f of files) {
      const prev = owners.get(f.path);
      if (prev) throw new Error(`features ${prev} and ${f.feature} both write ${f.path}`);
      owners.set(f.path, f.feature);
      plan.files.push({ ...f, notify: [...new Set(f.notify)].sort() });
    }
  };
  for (const feature of FEATURES) {
    const c: Contribution = feature.contribute(ctx);
    c.install?.forEach((p) => install.add(p));
    purge.push(...(c.purge ?? []));
    const keys = (c.users ?? []).map((u) => authorizedKeysItems(u, u.authorizedKeys ?? [], feature.name));
    addFiles([...(c.files ?? []).map((f) => ({ ...f, feature: feature.name })), ...keys.flatMap((k) => k.files)]);
    for (const d of c.dirs ?? []) plan.dirs.push({ ...d, feature: feature.name });
    plan.dirs.push(...keys.flatMap((k) => k.dirs));
    for (const { authorizedKeys: _, ...u } of c.users ?? []) plan.users.push({ ...u, feature: feature.name });
    plan.units.enable.push(...(c.enable ?? []));
    plan.units.disable.push(...(c.disable ?? []));
    plan.units.mask.push(...(c.mask ?? []));
    Object.assign(plan.sysctls, c.sysctls ?? {});
    for (const [k, v] of Object.entries(c.kernelParams ?? {})) {
      if (k in plan.kernelParams) throw new Error(`two features set the kernel parameter ${k}`);
      plan.kernelParams[k] = v;
    }
    for (const h of c.handlers ?? []) handlers.set(h.name, h);
    plan.checks.push(...(c.checks ?? []));
    plan.notes.push(...(c.notes ?? []));
  }
  // One drop-in holds every feature's sysctls: it is the system's, whichever feature asked.
  const sysctl = sysctlItems(plan.sysctls, 'system');
  addFiles(sysctl.files);
  for (const h of sysctl.handlers) handlers.set(h.name, h);
  if (plan.files.some((f) => f.notify.includes('daemon-reload'))) handlers.set(DAEMON_RELOAD.name, DAEMON_RELOAD);
  for (const f of plan.files) {
    for (const n of f.notify) if (!handlers.has(n)) throw new Error(`${f.path} notifies unknown handler ${n}`);
  }
  const protectedNames = new Set([...install, ...plan.packages.keep]);
  const { purge: finalPurge } = filterPurge(purge, protectedNames, plan.packages.keep);
  plan.packages.install = [...install].sort();
  plan.packages.purge = finalPurge;
  for (const p of finalPurge.filter((x) => !/[*?]/.test(x))) {
    plan.checks.push({ kind: 'package-absent', name: p, description: `${p} is not installed` });
  }
  plan.files.sort((a, b) => a.path.localeCompare(b.path));
  plan.dirs.sort((a, b) => a.path.localeCompare(b.path));
  plan.users.sort((a, b) => Number(b.system) - Number(a.system) || a.name.localeCompare(b.name));
  plan.units.enable = [...new Set(plan.units.enable)].sort();
  plan.units.disable = [...new Set(plan.units.disable)].sort();
  plan.units.mask = [...new Set(plan.units.mask)].sort();
  plan.handlers = [...handlers.values()].sort((a, b) => handlerOrder(a) - handlerOrder(b) || a.name.localeCompare(b.name));
  return plan;
}

/** daemon-reload and config commands before restarts, so restarts see the new units. */
function handlerOrder(h: PlanHandler): number {
  if (h.action === 'daemon-reload') return 0;
  if (h.action === 'command' || h.action === 'sysctl') return 1;
  return 2;
}
