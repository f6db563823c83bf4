/**
 * Bundle: the Plan made concrete for a target — a manifest, each file's content as its own file,
 * and the converger scripts from provision/. The same bundle is applied in a chroot during
 * `build` and over SSH during `provision`. Building is pure and deterministic: the same Plan
 * gives the same bytes (and digest), which lets callers cache and compare bundles. It decides
 * nothing: every file, directory and handler it names is one of the Plan's, checked and encoded.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Plan, PlanCheck, PlanHandler } from '../plan/types.js';
import { UserError } from '../util/errors.js';
import {
  MANIFEST_HEADER,
  checkAccount,
  checkKernelParam,
  checkMode,
  checkName,
  checkPackage,
  checkPackagePattern,
  checkPath,
  checkSysctlKey,
  checkText,
  checkUnit,
  record,
  recordTrailingEmpty,
} from './manifest.js';
import { tarBytes, type TarEntry } from './tar.js';

export interface BundleEntry {
  /** Path inside the bundle, e.g. "manifest", "files/0003". */
  path: string;
  mode: number;
  content: Buffer;
}

export interface Bundle {
  /** Sorted by path; "files/" holds one entry per managed file. */
  entries: BundleEntry[];
  manifest: string;
  /** sha256 of the tar form: identical for identical Plans. */
  digest: string;
}

/** The provision/ folder of this package, found from this module whether run from src or dist. */
export function provisionDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'provision');
    if (existsSync(join(candidate, 'apply.sh'))) return candidate;
    dir = dirname(dir);
  }
  throw new Error('internal: provision/apply.sh not found next to the syncpi package');
}

interface FileSpec {
  path: string;
  mode: string;
  owner: string;
  /** "-" = the owner's primary group, resolved on the target. */
  group: string;
  content: Buffer;
  secret: boolean;
  notify: string[];
  /** argv; "%s" is the new content's path on the target. */
  validate: string[];
}

function uniq<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

function checkGroupField(what: string, v: string): string {
  return v === '-' ? v : checkAccount(what, v);
}

function handlerRecords(h: PlanHandler, i: number): string[] {
  const what = `handlers[${i}]`;
  const name = checkName(`${what}.name`, h.name);
  const line = (unit: string): string => record('handler', name, h.action, unit, h.liveOnly ? '1' : '0');
  switch (h.action) {
    case 'restart':
    case 'reload':
      return [line(checkUnit(`${what}.unit`, h.unit))];
    case 'daemon-reload':
    case 'sysctl':
      return [line('-')];
    case 'command': {
      if (h.argv.length === 0) throw new UserError(`invalid handler "${name}" in the plan: action command needs argv`);
      checkName(`${what}.argv[0]`, h.argv[0]);
      return [line('-'), ...h.argv.map((a, j) => recordTrailingEmpty('handlerarg', name, checkText(`${what}.argv[${j}]`, a, { allowEmpty: j > 0 })))];
    }
    default:
      throw new UserError(`invalid handler "${name}" in the plan: unknown action ${JSON.stringify((h as { action: unknown }).action)}`);
  }
}

/** A file's validator: a command (not an option) and its arguments, one of them "%s". */
function checkValidator(what: string, argv: string[]): string[] {
  if (argv.length === 0) return argv;
  checkName(`${what}[0]`, argv[0]!);
  argv.forEach((a, j) => checkText(`${what}[${j}]`, a));
  if (!argv.slice(1).includes('%s')) throw new UserError(`invalid ${what} in the plan: one argument must be "%s", the file to check`);
  return argv;
}

function checkSha256(what: string, v: string): string {
  if (!/^[0-9a-f]{64}$/.test(v)) throw new UserError(`invalid ${what} ${JSON.stringify(v)} in the plan: expected 64 lowercase hex digits`);
  return v;
}

function checkRecords(c: PlanCheck, id: string): string[] {
  const what = `checks[${id}]`;
  checkText(`${what}.description`, c.description);
  switch (c.kind) {
    case 'service-active':
    case 'service-enabled':
      return [record('check', id, c.kind, checkUnit(`${what}.unit`, c.unit))];
    case 'file':
      return [
        record(
          'check',
          id,
          'file',
          checkPath(`${what}.path`, c.path),
          c.mode ? checkMode(`${what}.mode`, c.mode) : '-',
          c.owner ? checkAccount(`${what}.owner`, c.owner) : '-',
          c.sha256 ? checkSha256(`${what}.sha256`, c.sha256) : '-',
        ),
      ];
    case 'package-present':
    case 'package-absent':
      return [record('check', id, c.kind, checkPackage(`${what}.name`, c.name))];
    case 'mount':
      return [record('check', id, 'mount', checkPath(`${what}.path`, c.path))];
    case 'fstab':
      return [record('check', id, 'fstab', checkPath(`${what}.path`, c.path), checkName(`${what}.spec`, c.spec))];
    case 'sysctl':
      return [record('check', id, 'sysctl', checkSysctlKey(`${what}.key`, c.key), checkText(`${what}.value`, c.value))];
    case 'http':
    case 'ssh-password-refused':
      return [record('check', id, c.kind)];
    case 'command': {
      if (c.argv.length === 0) throw new UserError(`invalid check ${id} in the plan: command needs argv`);
      checkName(`${what}.argv[0]`, c.argv[0]!);
      if (!Number.isInteger(c.expectExit) || c.expectExit < 0 || c.expectExit > 255) {
        throw new UserError(`invalid check ${id} in the plan: expectExit must be 0..255`);
      }
      const out = [record('check', id, 'command', c.liveOnly ? '1' : '0', String(c.expectExit))];
      c.argv.forEach((a, j) => out.push(recordTrailingEmpty('checkarg', id, checkText(`${what}.argv[${j}]`, a, { allowEmpty: j > 0 }))));
      return out;
    }
    default:
      throw new UserError(`invalid check ${id} in the plan: unknown kind ${JSON.stringify((c as { kind: unknown }).kind)}`);
  }
}

/** The Plan's files as the manifest records them; every file the target gets is one of them. */
function checkFiles(plan: Plan): FileSpec[] {
  const files: FileSpec[] = plan.files.map((f, i) => ({
    path: checkPath(`files[${i}].path`, f.path),
    mode: checkMode(`files[${i}].mode (${f.path})`, f.mode),
    owner: checkAccount(`files[${i}].owner (${f.path})`, f.owner),
    group: checkGroupField(`files[${i}].group (${f.path})`, f.group),
    content: Buffer.from(f.content, 'utf8'),
    secret: f.secret === true,
    notify: f.notify.map((n) => checkName(`files[${i}].notify`, n)),
    validate: checkValidator(`files[${i}].validate (${f.path})`, f.validate ?? []),
  }));
  const seen = new Set<string>();
  for (const f of files) {
    if (seen.has(f.path)) throw new UserError(`invalid plan: the file ${f.path} is managed twice`);
    seen.add(f.path);
  }
  return files;
}

function assertDeterministicInput(plan: Plan): void {
  if (plan.format !== 1) throw new UserError(`unsupported plan format ${String(plan.format)} (this syncpi applies format 1)`);
}

export async function buildBundle(plan: Plan): Promise<Bundle> {
  assertDeterministicInput(plan);
  const lines: string[] = [MANIFEST_HEADER];
  lines.push(record('name', checkText('name', plan.name)));
  lines.push(record('hostname', checkText('hostname', plan.hostname)));
  lines.push(record('confighash', checkText('configHash', plan.configHash)));

  const pk = plan.packages;
  for (const p of uniq(pk.install)) lines.push(record('install', checkPackage('packages.install', p)));
  for (const p of uniq(pk.purge)) lines.push(record('purge', checkPackagePattern('packages.purge', p)));
  for (const p of uniq(pk.keep)) lines.push(record('keep', checkPackage('packages.keep', p)));

  const groups = uniq(plan.users.flatMap((u) => u.groups));
  for (const g of groups) lines.push(record('group', checkAccount('users[].groups', g)));
  plan.users.forEach((u, i) => {
    const name = checkAccount(`users[${i}].name`, u.name);
    lines.push(record('user', name, u.system ? '1' : '0', checkPath(`users[${i}].home`, u.home), checkPath(`users[${i}].shell`, u.shell)));
    for (const g of uniq(u.groups)) lines.push(record('usergroup', name, g));
  });

  const files = checkFiles(plan);
  plan.dirs.forEach((d, i) => {
    lines.push(
      record(
        'dir',
        checkPath(`dirs[${i}].path`, d.path),
        checkMode(`dirs[${i}].mode (${d.path})`, d.mode),
        checkAccount(`dirs[${i}].owner (${d.path})`, d.owner),
        checkGroupField(`dirs[${i}].group (${d.path})`, d.group),
      ),
    );
  });

  const handlerNames = new Set(plan.handlers.map((h) => h.name));
  const entries: BundleEntry[] = [];
  files.forEach((f, i) => {
    const src = `files/${String(i + 1).padStart(4, '0')}`;
    const sha = createHash('sha256').update(f.content).digest('hex');
    lines.push(record('file', f.path, f.mode, f.owner, f.group, f.secret ? '1' : '0', src, sha));
    for (const n of uniq(f.notify)) {
      if (!handlerNames.has(n)) throw new UserError(`invalid plan: ${f.path} notifies "${n}", which is no handler of the plan`);
      lines.push(record('notify', f.path, n));
    }
    for (const a of f.validate) lines.push(record('validate', f.path, a));
    entries.push({ path: src, mode: f.secret ? 0o600 : 0o644, content: f.content });
  });

  for (const u of uniq(plan.units.mask)) lines.push(record('mask', checkUnit('units.mask', u)));
  for (const u of uniq(plan.units.disable)) lines.push(record('disable', checkUnit('units.disable', u)));
  for (const u of uniq(plan.units.enable)) lines.push(record('enable', checkUnit('units.enable', u)));

  for (const k of Object.keys(plan.sysctls).sort()) lines.push(record('sysctl', checkSysctlKey('sysctls key', k), checkText(`sysctls.${k}`, plan.sysctls[k]!)));
  for (const k of Object.keys(plan.kernelParams).sort()) lines.push(record('kparam', ...checkKernelParam('kernelParams', k, plan.kernelParams[k]!)));
  const seenHandler = new Set<string>();
  plan.handlers.forEach((h, i) => {
    if (seenHandler.has(h.name)) throw new UserError(`invalid plan: handler "${h.name}" is defined twice`);
    seenHandler.add(h.name);
    lines.push(...handlerRecords(h, i));
  });
  plan.checks.forEach((c, i) => lines.push(...checkRecords(c, String(i))));

  const manifest = lines.join('\n') + '\n';
  const dir = provisionDir();
  entries.push(
    { path: 'manifest', mode: 0o644, content: Buffer.from(manifest, 'utf8') },
    { path: 'apply.sh', mode: 0o755, content: readFileSync(join(dir, 'apply.sh')) },
    { path: 'facts.sh', mode: 0o644, content: readFileSync(join(dir, 'facts.sh')) },
    { path: 'kparam.awk', mode: 0o644, content: readFileSync(join(dir, 'kparam.awk')) },
    { path: 'verify.sh', mode: 0o755, content: readFileSync(join(dir, 'verify.sh')) },
  );
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const digest = createHash('sha256').update(bundleTar({ entries, manifest, digest: '' })).digest('hex');
  return { entries, manifest, digest };
}

function tarEntries(bundle: Bundle): TarEntry[] {
  const out: TarEntry[] = [];
  if (bundle.entries.some((e) => e.path.startsWith('files/'))) out.push({ path: 'files/', mode: 0o755 });
  for (const e of bundle.entries) out.push({ path: e.path, mode: e.mode, content: e.content });
  out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return out;
}

/** The whole bundle as one tar archive, for a single upload. */
export function bundleTar(bundle: Bundle): Buffer {
  return tarBytes(tarEntries(bundle));
}

/** Write the bundle into `dir` (created 0700: the bundle can hold secrets). */
export function writeBundleDir(bundle: Bundle, dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const e of bundle.entries) {
    const p = join(dir, e.path);
    mkdirSync(dirname(p), { recursive: true, mode: 0o700 });
    writeFileSync(p, e.content, { mode: e.mode });
  }
}
