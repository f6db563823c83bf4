/**
 * Package stripping: the profile's list plus the config's remove list, minus keep and minus
 * everything any feature installs. Essential/required packages are refused on the target too,
 * where the package database is known; here we only know names and globs.
 */
import type { Feature, FeatureContext } from '../context.js';

/** A profile is a plan input (templates/packages/NAME.txt): one package or glob a line, # comments. */
export function profilePackages(ctx: Pick<FeatureContext, 'read'>, profile: string): string[] {
  if (profile === 'none') return [];
  return ctx.read(`packages/${profile}.txt`)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}

/** Patterns from purge that would match a protected name are dropped (kept packages win). */
export function filterPurge(purge: string[], protectedNames: Set<string>, keep: string[]): { purge: string[]; dropped: string[] } {
  const keepRes = keep.map(globToRegExp);
  const out: string[] = [];
  const dropped: string[] = [];
  for (const p of [...new Set(purge)]) {
    const exact = !/[*?]/.test(p);
    if ((exact && protectedNames.has(p)) || keepRes.some((k) => k.test(p))) {
      dropped.push(p);
      continue;
    }
    out.push(p);
  }
  return { purge: out.sort(), dropped: dropped.sort() };
}

export const packages: Feature = {
  name: 'packages',
  contribute(ctx) {
    const p = ctx.config.packages;
    return { install: p.install, purge: [...profilePackages(ctx, p.profile), ...p.remove] };
  },
};
