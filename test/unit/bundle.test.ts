/**
 * The bundle: deterministic bytes, a manifest the shell can split safely, hostile values either
 * carried through exactly or refused with a clear message, secrets marked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBundle, bundleTar, writeBundleDir } from '../../src/bundle/bundle.js';
import { parseManifest } from '../../src/bundle/manifest.js';
import { ApplyOutputParser, parseApplyOutput, parseVerifyOutput } from '../../src/bundle/protocol.js';
import { bundleRunScript, settleReport } from '../../src/targets/apply.js';
import { UserError } from '../../src/util/errors.js';
import { planFromFile } from '../../src/plan/load.js';
import type { Plan } from '../../src/plan/types.js';
import { demoPlan, emptyPlan, file } from '../helpers/converger-plan.js';
import { fixtureKey, fixtures, minimalYaml, tempDir, writeConfig } from '../helpers/fixtures.js';

const HOSTILE_PATH = "/etc/syncpi/$(reboot) `id` 'q' \"dq\" ünïcødé ; & |.conf";

test('same Plan, same bytes', async () => {
  const a = await buildBundle(demoPlan());
  const b = await buildBundle(demoPlan());
  assert.equal(a.digest, b.digest);
  assert.ok(bundleTar(a).equals(bundleTar(b)));
  const changed = demoPlan();
  changed.files[0]!.content += 'x';
  assert.notEqual((await buildBundle(changed)).digest, a.digest);
});

test('the tar unpacks with Debian tar into the same files, owned by root, fixed mtime', async () => {
  const bundle = await buildBundle(demoPlan());
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-bundle-test-'));
  try {
    writeFileSync(join(dir, 'b.tar'), bundleTar(bundle));
    const listing = execFileSync('tar', ['-tvf', join(dir, 'b.tar'), '--numeric-owner'], { encoding: 'utf8' });
    for (const line of listing.trim().split('\n')) assert.match(line, /^\S+ 0\/0 .* 1970-01-01 /, line);
    mkdirSync(join(dir, 'x'));
    execFileSync('tar', ['-xf', join(dir, 'b.tar'), '-C', join(dir, 'x')]);
    for (const e of bundle.entries) {
      assert.ok(readFileSync(join(dir, 'x', e.path)).equals(e.content), e.path);
      assert.equal(statSync(join(dir, 'x', e.path)).mode & 0o777, e.mode, `${e.path} mode`);
    }
    assert.equal(statSync(join(dir, 'x', 'apply.sh')).mode & 0o111, 0o111);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('manifest: no empty field, no control character, records the shell expects', async () => {
  const bundle = await buildBundle(demoPlan());
  const recs = parseManifest(bundle.manifest);
  for (const r of recs) {
    const trailingEmptyAllowed = r[0] === 'handlerarg' || r[0] === 'checkarg';
    r.forEach((f, i) => {
      if (!(trailingEmptyAllowed && i === r.length - 1)) assert.notEqual(f, '', `empty field in ${r.join('|')}`);
      assert.doesNotMatch(f, /[\u0000-\u001f\u007f]/);
    });
  }
  const kinds = new Set(recs.map((r) => r[0]));
  for (const k of ['install', 'purge', 'group', 'user', 'usergroup', 'dir', 'file', 'notify', 'enable', 'mask', 'sysctl', 'handler', 'check']) {
    assert.ok(kinds.has(k), `manifest has ${k} records`);
  }
  // Modes are in stat's %a form, so the shell compares strings.
  assert.ok(recs.some((r) => r[0] === 'file' && r[1] === '/etc/syncd/secret.key' && r[2] === '600'));
});

/**
 * The bundle decides nothing: each file, directory and handler its manifest names for the target
 * is one of the Plan's, with the same mode, owner, group and bytes, and it names all of them.
 */
async function assertOnlyEncodes(plan: Plan): Promise<void> {
  const bundle = await buildBundle(plan);
  const recs = parseManifest(bundle.manifest);
  const entry = new Map(bundle.entries.map((e) => [e.path, e.content]));
  const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');
  const mode = (m: string) => parseInt(m, 8).toString(8);
  const byPath = <T extends { path: string }>(xs: T[]) => [...xs].sort((a, b) => (a.path < b.path ? -1 : 1));
  const files = recs.filter((r) => r[0] === 'file').map((r) => {
    assert.equal(sha(entry.get(r[6]!)!), r[7], `${r[1]}: the carried bytes are the recorded ones`);
    return { path: r[1]!, mode: r[2]!, owner: r[3]!, group: r[4]!, secret: r[5] === '1', sha256: r[7]! };
  });
  assert.deepEqual(byPath(files), byPath(plan.files.map((f) => ({ path: f.path, mode: mode(f.mode), owner: f.owner, group: f.group, secret: f.secret === true, sha256: sha(f.content) }))));
  const dirs = recs.filter((r) => r[0] === 'dir').map((r) => ({ path: r[1]!, mode: r[2]!, owner: r[3]!, group: r[4]! }));
  assert.deepEqual(byPath(dirs), byPath(plan.dirs.map((d) => ({ path: d.path, mode: mode(d.mode), owner: d.owner, group: d.group }))));
  assert.deepEqual(recs.filter((r) => r[0] === 'handler').map((r) => r[1]), plan.handlers.map((h) => h.name), 'the handlers, in the plan\'s order');
  assert.deepEqual(
    recs.filter((r) => r[0] === 'notify').map((r) => `${r[1]} ${r[2]}`).sort(),
    plan.files.flatMap((f) => f.notify.map((n) => `${f.path} ${n}`)).sort(),
  );
}

test('every file, directory and handler the bundle carries to the target is one the plan lists', async () => {
  process.env.SYNCPI_TEST_PSK = 'correct horse battery';
  process.env.SYNCPI_TEST_PANEL_PASSWORD = 'a long enough password';
  const rsync = writeConfig(minimalYaml(`sync:\n  folders:\n    - { id: docs, path: docs, devices: [] }\naccess:\n  rsync:\n    - { name: cam, key: "${fixtureKey}", folder: docs, mode: write-only }\n`));
  const full = join(tempDir(), 'full.yaml');
  copyFileSync(join(fixtures, 'good', 'full.yaml'), full);
  for (const path of [writeConfig(minimalYaml()), full, rsync]) {
    const { plan } = planFromFile(path);
    // Those the bundle used to add on its own.
    for (const p of ['/home/pi/.ssh/authorized_keys', '/etc/sysctl.d/90-syncpi.conf']) assert.ok(plan.files.some((f) => f.path === p), `${path}: the plan lists ${p}`);
    assert.ok(plan.dirs.some((d) => d.path === '/home/pi/.ssh' && d.mode === '0700'), `${path}: the plan lists ~/.ssh`);
    assert.ok(plan.handlers.some((h) => h.action === 'sysctl'), `${path}: the plan lists the sysctl handler`);
    await assertOnlyEncodes(plan);
  }
  assert.ok(planFromFile(rsync).plan.files.some((f) => f.path === '/var/lib/syncpi-rsync/.ssh/authorized_keys' && f.owner === 'syncpi-rsync' && f.feature === 'rsync'));
  await assertOnlyEncodes(demoPlan());
});

test('a plan without sysctls or keys has no drop-in, no authorized_keys and no handler for them', async () => {
  const plan = emptyPlan({ users: [{ name: 'svc', system: true, home: '/var/lib/svc', shell: '/usr/sbin/nologin', groups: [], feature: 'sync' }] });
  const recs = parseManifest((await buildBundle(plan)).manifest);
  assert.deepEqual(recs.filter((r) => ['file', 'dir', 'handler', 'sysctl'].includes(r[0]!)), []);
});

test('secret files are marked, stored 0600 in the bundle, and their content is not in the manifest', async () => {
  const bundle = await buildBundle(demoPlan());
  const rec = parseManifest(bundle.manifest).find((r) => r[0] === 'file' && r[1] === '/etc/syncd/secret.key')!;
  assert.equal(rec[5], '1');
  const entry = bundle.entries.find((e) => e.path === rec[6])!;
  assert.equal(entry.mode, 0o600);
  assert.equal(rec[7], createHash('sha256').update(entry.content).digest('hex'));
  assert.ok(!bundle.manifest.includes('s3cr3t'));
});

test('hostile but legal values are carried exactly: paths and contents with $(), backticks, quotes, unicode', async () => {
  const content = "#!/bin/sh\necho $(reboot) `reboot` 'q' \"dq\" ../../x ünïcødé\n\ttab\r\n";
  const plan = emptyPlan({
    files: [file(HOSTILE_PATH, content, { notify: ['h'] })],
    handlers: [{ name: 'h', action: 'command', argv: ['/bin/echo', '$(reboot)', '', "it's"], liveOnly: false }],
  });
  const bundle = await buildBundle(plan);
  const recs = parseManifest(bundle.manifest);
  const rec = recs.find((r) => r[0] === 'file')!;
  assert.equal(rec[1], HOSTILE_PATH);
  assert.equal(bundle.entries.find((e) => e.path === rec[6])!.content.toString('utf8'), content);
  assert.deepEqual(
    recs.filter((r) => r[0] === 'handlerarg').map((r) => r[2]),
    ['/bin/echo', '$(reboot)', '', "it's"],
  );
});

function rejects(name: string, mutate: (p: ReturnType<typeof demoPlan>) => void, message: RegExp): void {
  test(`refused: ${name}`, async () => {
    const plan = demoPlan();
    mutate(plan);
    await assert.rejects(buildBundle(plan), (e: unknown) => {
      assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
      assert.match(e.message, message);
      assert.ok(!e.message.includes('\n'), 'one-line message');
      return true;
    });
  });
}

rejects('a newline in a path', (p) => (p.files[0]!.path = '/etc/x\nCHANGE\tfile'), /control characters/);
rejects('a tab in a path', (p) => (p.files[0]!.path = '/etc/a\tb'), /control characters/);
rejects('a relative path', (p) => (p.files[0]!.path = 'etc/x'), /absolute path/);
rejects('a path with ..', (p) => (p.files[0]!.path = '/etc/../root/.ssh/authorized_keys'), /must not contain "\.\."/);
rejects('a path that is not normalised', (p) => (p.dirs[0]!.path = '/srv//sync/'), /normalised/);
rejects('a bad mode', (p) => (p.files[0]!.mode = '999'), /octal mode/);
rejects('an owner with a command substitution', (p) => (p.files[0]!.owner = '$(reboot)'), /user or group name/);
rejects('a user named like an option', (p) => (p.users[0]!.name = '-o'), /user or group name/);
rejects('a package with a space', (p) => (p.packages.install = ['foo bar']), /Debian package name/);
rejects('a package with shell syntax', (p) => (p.packages.purge = ['x;reboot']), /Debian package name/);
rejects('a unit with shell syntax', (p) => (p.units.enable = ['x`reboot`.service']), /systemd unit name/);
rejects('a unit starting with "-"', (p) => (p.units.mask = ['--now.service']), /systemd unit name/);
rejects('a sysctl value with a newline', (p) => (p.sysctls['kernel.x'] = '1\nkernel.y = 2'), /control characters/);
rejects('a sysctl key with a slash', (p) => (p.sysctls['../x'] = '1'), /sysctl key/);
rejects('a handler argv with a newline', (p) => p.handlers.push({ name: 'c', action: 'command', argv: ['/bin/true', 'a\nb'], liveOnly: false }), /control characters/);
rejects('a notify of a missing handler', (p) => (p.files[0]!.notify = ['nope']), /no handler/);
rejects('a file managed twice', (p) => p.files.push({ ...p.files[0]! }), /managed twice/);
// The type refuses it; a plan from elsewhere (JSON) meets the same refusal at run time.
// @ts-expect-error a restart names its unit
rejects('a restart handler without unit', (p) => p.handlers.push({ name: 'r', action: 'restart', liveOnly: true }), /systemd unit name/);

test('protocol parser: changes, diffs with tabs, handlers, failure with output', () => {
  const out = [
    'PROTO\t1\tmode=check\tenv=live',
    'STEP\tfiles',
    'CHANGE\tfile\t/etc/a b\tupdated',
    'DIFF\t/etc/a b\t--- /etc/a b',
    'DIFF\t/etc/a b\t+x\ty',
    'HANDLER\tr\trestart\tsyncthing.service\twould-run',
    'SUMMARY\tmode=check\tenv=live\tchanges=1\thandlers=0\tresult=ok',
  ].join('\n');
  const r = parseApplyOutput(out);
  assert.equal(r.ok, true);
  assert.equal(r.mode, 'check');
  assert.deepEqual(r.changes, [{ kind: 'file', target: '/etc/a b', action: 'updated' }]);
  assert.equal(r.diffs['/etc/a b'], '--- /etc/a b\n+x\ty\n');
  assert.deepEqual(r.handlers, [{ name: 'r', action: 'restart', unit: 'syncthing.service', status: 'would-run' }]);

  const failed = parseApplyOutput(['PROTO\t1\tmode=apply\tenv=live', 'STEP\tpackages-install', 'OUT\tE: Unable to locate package nope', 'FAIL\tpackages-install\t100\tcommand failed: apt-get install nope', 'SUMMARY\tmode=apply\tenv=live\tchanges=0\thandlers=0\tresult=failed'].join('\n'));
  assert.equal(failed.ok, false);
  assert.deepEqual(failed.failure, { step: 'packages-install', exitCode: 100, message: 'command failed: apt-get install nope', output: ['E: Unable to locate package nope'] });

  const cut = parseApplyOutput('PROTO\t1\tmode=apply\tenv=live\nSTEP\tfiles\nCHANGE\tfile\t/etc/x\tcreated\n');
  assert.equal(cut.ok, false);
  assert.equal(cut.failure?.step, 'files');
  assert.match(cut.failure!.message, /without a summary/);
});

test('protocol parser: output split anywhere gives the same report; records arrive with their step', () => {
  const out = [
    'PROTO\t1\tmode=apply\tenv=live',
    'STEP\tusers',
    'CHANGE\tuser\tsyncd\tgroup syncgrp removed',
    'STEP\tunits',
    'CHANGE\tunit\tsyncthing@syncd.service\treenabled',
    'HANDLER\tdaemon-reload\tdaemon-reload\t-\tran',
    'SUMMARY\tmode=apply\tenv=live\tchanges=2\thandlers=1\tresult=ok',
  ].join('\n');
  const whole = parseApplyOutput(out);
  for (const size of [1, 3, 7, 64]) {
    const seen: string[] = [];
    const p = new ApplyOutputParser((tag, step) => seen.push(`${tag}@${step ?? ''}`));
    for (let i = 0; i < out.length; i += size) p.push(Buffer.from(out.slice(i, i + size)));
    assert.deepEqual(p.end(), whole, `chunks of ${size}`);
    assert.deepEqual(seen, ['PROTO@', 'STEP@users', 'CHANGE@users', 'STEP@units', 'CHANGE@units', 'HANDLER@units', 'SUMMARY@units']);
  }
  assert.deepEqual(whole.handlers, [{ name: 'daemon-reload', action: 'daemon-reload', status: 'ran' }]);
});

test('settleReport: what the transport saw completes the report', () => {
  const ok = () => parseApplyOutput('PROTO\t1\tmode=apply\tenv=live\nSTEP\tfiles\nSUMMARY\tresult=ok\n');
  assert.equal(settleReport(ok(), { exitCode: 0, stderr: '' }).failure, undefined);
  const late = settleReport(ok(), { exitCode: null, signal: 'SIGKILL', stderr: 'Killed\n' });
  assert.equal(late.ok, false);
  assert.deepEqual(late.failure, { step: 'files', exitCode: null, message: 'the converger was killed by SIGKILL after reporting success', output: ['Killed'] });
  const never = settleReport(parseApplyOutput(''), { exitCode: 127, stderr: 'sh: 1: tar: not found\n' });
  assert.deepEqual(never.failure, { step: 'launch', exitCode: 127, message: 'the converger did not start', output: ['sh: 1: tar: not found'] });
  const cut = settleReport(parseApplyOutput('PROTO\t1\tmode=apply\tenv=live\nSTEP\tfiles\n'), { exitCode: 255, stderr: '' });
  assert.equal(cut.failure?.step, 'files');
  assert.equal(cut.failure?.exitCode, null, 'a step ran: the transport\'s code is not that step\'s');
});

test('the run script: a bundle that does not unpack fails "upload" with tar\'s exit code and message, and leaves no temp dir', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'syncpi-run-'));
  try {
    let stdout = '';
    let status: number | null = 0;
    try {
      execFileSync('sh', ['-c', bundleRunScript('apply', { env: 'chroot' })], { input: Buffer.from('this is not a tar archive'.repeat(40)), env: { ...process.env, TMPDIR: tmp }, stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      stdout = String((e as { stdout: Buffer }).stdout);
      status = (e as { status: number | null }).status;
    }
    assert.equal(status, 1);
    const r = settleReport(parseApplyOutput(stdout), { exitCode: status, stderr: '' });
    assert.equal(r.failure?.step, 'upload');
    assert.ok(r.failure!.exitCode && r.failure!.exitCode > 0, `tar's own exit code, got ${r.failure!.exitCode}`);
    assert.match(r.failure!.message, /did not arrive whole/);
    assert.ok(r.failure!.output.some((l) => /tar/.test(l)), r.failure!.output.join('\n'));
    assert.deepEqual(readdirSync(tmp), [], 'temp dir removed');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('verify.sh reads hostile paths from the manifest exactly (run by dash, read-only)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-verify-test-'));
  try {
    const hostile = join(dir, "$(touch PWNED) `touch PWNED2` 'q' ünï");
    writeFileSync(hostile, 'data\n', { mode: 0o640 });
    const sha = createHash('sha256').update('data\n').digest('hex');
    const plan = emptyPlan({
      checks: [
        { kind: 'file', path: hostile, mode: '0640', sha256: sha, description: 'hostile path' },
        { kind: 'file', path: hostile, mode: '0600', description: 'wrong mode' },
        { kind: 'file', path: join(dir, 'missing'), description: 'missing' },
        { kind: 'command', argv: ['test', '-f', hostile], expectExit: 0, liveOnly: false, description: 'argv' },
        { kind: 'http', url: 'https://127.0.0.1/', expectUnauthenticated: 401, tls: true, description: 'remote' },
      ],
    });
    const bdir = join(dir, 'bundle');
    writeBundleDir(await buildBundle(plan), bdir);
    let stdout = '';
    try {
      stdout = execFileSync('dash', [join(bdir, 'verify.sh'), '--live', bdir], { encoding: 'utf8', cwd: dir });
    } catch (e) {
      stdout = (e as { stdout: string }).stdout; // exit 1: some checks fail, as intended
    }
    const { results, complete } = parseVerifyOutput(stdout);
    assert.ok(complete, stdout);
    assert.deepEqual(results.map((r) => r.status), ['pass', 'fail', 'fail', 'pass', 'remote']);
    assert.deepEqual(execFileSync('ls', ['-A', dir], { encoding: 'utf8' }).split('\n').filter((n) => n === 'PWNED' || n === 'PWNED2'), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a file's validator travels as validate records in argv order; one without %s, or starting with -, is refused", async () => {
  const plan = emptyPlan({ files: [file('/etc/nftables.conf', 'table inet syncpi {}\n', { validate: ['nft', '-c', '-f', '%s'] })] });
  const records = parseManifest((await buildBundle(plan)).manifest).filter((r) => r[0] === 'validate');
  assert.deepEqual(records, ['nft', '-c', '-f', '%s'].map((a) => ['validate', '/etc/nftables.conf', a]));
  for (const validate of [['nft', '-c', '-f', '/etc/nftables.conf'], ['-c', '%s']]) {
    await assert.rejects(buildBundle(emptyPlan({ files: [file('/etc/x', 'x\n', { validate })] })), (e: unknown) => {
      assert.ok(e instanceof UserError, String(e));
      assert.match(e.message, /files\[0\]\.validate \(\/etc\/x\)/);
      return true;
    });
  }
});
