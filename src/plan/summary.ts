/** `syncpi plan` output: a readable summary, and the JSON form with secrets redacted. */
import { createHash } from 'node:crypto';
import { authorizedKeysPath } from './derived-files.js';
import type { Plan } from './types.js';

export function redactPlan(plan: Plan): Plan {
  return {
    ...plan,
    files: plan.files.map((f) =>
      f.secret ? { ...f, content: `<secret: ${Buffer.byteLength(f.content)} bytes, sha256 ${createHash('sha256').update(f.content).digest('hex').slice(0, 16)}…>` } : f,
    ),
  };
}

export function summarisePlan(plan: Plan): string {
  const out: string[] = [];
  const base = plan.base.kind === 'debian' ? `Debian ${plan.base.suite} ${plan.base.arch}${plan.base.mirror ? ` from ${plan.base.mirror}` : ''}` : `image ${plan.base.source} (${plan.base.arch})`;
  out.push(`Appliance ${plan.name} (hostname ${plan.hostname})`);
  out.push(`  base: ${base}`);
  out.push(`  config hash: ${plan.configHash.slice(0, 16)}`);
  out.push('');
  out.push(`Packages to install (${plan.packages.install.length}): ${plan.packages.install.join(' ')}`);
  out.push(`Packages to purge when present (${plan.packages.purge.length}): ${plan.packages.purge.join(' ') || '(none)'}`);
  if (plan.packages.keep.length) out.push(`Kept whatever the profile says: ${plan.packages.keep.join(' ')}`);
  out.push('');
  const user = (u: Plan['users'][number]): string => {
    const keys = plan.files.find((f) => f.path === authorizedKeysPath(u.home))?.content.split('\n').filter(Boolean).length ?? 0;
    return `${u.name}${u.system ? ' (system)' : ''}${keys ? ` [${keys} SSH key${keys > 1 ? 's' : ''}]` : ''}`;
  };
  out.push(`Users: ${plan.users.map(user).join(', ')}`);
  out.push('');
  // "pi:" as chown reads it: the owner and its login group (the plan's "-").
  const owner = (o: { owner: string; group: string }): string => `${o.owner}:${o.group === '-' ? '' : o.group}`.padEnd(18);
  out.push(`Files (${plan.files.length}):`);
  const w = Math.max(...plan.files.map((f) => f.path.length));
  for (const f of plan.files) {
    out.push(`  ${f.mode} ${owner(f)} ${f.path.padEnd(w)}  [${f.feature}]${f.secret ? ' (secret)' : ''}${f.notify.length ? ` → ${f.notify.join(', ')}` : ''}`);
  }
  out.push('');
  out.push(`Directories (${plan.dirs.length}):`);
  for (const d of plan.dirs) out.push(`  ${d.mode} ${owner(d)} ${d.path}  [${d.feature}]`);
  out.push('');
  out.push(`Units enabled: ${plan.units.enable.join(' ') || '(none)'}`);
  if (plan.units.disable.length) out.push(`Units disabled: ${plan.units.disable.join(' ')}`);
  if (plan.units.mask.length) out.push(`Units masked: ${plan.units.mask.join(' ')}`);
  out.push(`Sysctls: ${Object.entries(plan.sysctls).map(([k, v]) => `${k}=${v}`).join(' ') || '(none)'}`);
  if (Object.keys(plan.kernelParams).length) out.push(`Kernel command line (cmdline.txt; at the next boot): ${Object.entries(plan.kernelParams).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  if (plan.models.length) out.push(`Raspberry Pi models (the build checks the image boots each): ${plan.models.join(' ')}`);
  out.push(`Handlers (run once, when notified): ${plan.handlers.map((h) => h.name).join(', ')}`);
  out.push('');
  out.push(`Checks (${plan.checks.length}):`);
  const absent = plan.checks.filter((c) => c.kind === 'package-absent');
  for (const c of plan.checks) if (c.kind !== 'package-absent') out.push(`  - ${c.description}`);
  if (absent.length) out.push(`  - ${absent.length} stripped packages are not installed`);
  if (plan.notes.length) {
    out.push('');
    out.push('Notes:');
    for (const n of plan.notes) out.push(`  - ${n}`);
  }
  return out.join('\n') + '\n';
}
