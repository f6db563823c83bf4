/**
 * The converger applied in a chroot to a real Debian bookworm rootfs (amd64, made with
 * mmdebstrap from the machine's apt mirror and cached under /var/cache/syncpi-test/).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync, lstatSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { applyToRootfs, verifyRootfs } from '../../src/targets/rootfs.js';
import { ApplyFailed } from '../../src/targets/apply.js';
import { createReporter } from '../../src/util/report.js';
import type { ApplyReport } from '../../src/bundle/protocol.js';
import { AMD64_SPEC, freshRootfs, removeRootfs } from '../helpers/converger-rootfs.js';
import { demoPlan, emptyPlan, file } from '../helpers/converger-plan.js';

const reporter = createReporter({ json: true });
// JSON events would clutter the test output: keep them out of stdout.
(reporter as { result: (d: unknown) => void }).result = () => undefined;
const quiet = { ...reporter, step: <T,>(_n: string, fn: (p: () => void) => Promise<T>) => fn(() => undefined), info() {}, warn() {}, result() {}, json: true };

async function inRoot(root: string, ...argv: string[]): Promise<string> {
  const r = await execa('chroot', [root, ...argv], { reject: false });
  return `${r.stdout}`.trim();
}

async function pkgStatus(root: string, name: string): Promise<string> {
  return inRoot(root, 'dpkg-query', '-W', '-f=${db:Status-Abbrev}', name);
}

async function mountsUnder(root: string): Promise<string[]> {
  const text = readFileSync('/proc/self/mounts', 'utf8');
  return text.split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m === root || m.startsWith(`${root}/`));
}

function assertNoLeftovers(root: string): void {
  assert.ok(!existsSync(join(root, 'usr/sbin/policy-rc.d')), 'policy-rc.d removed');
  assert.deepEqual(readdirSync(join(root, 'tmp')).filter((n) => n.startsWith('syncpi-')), [], 'no bundle left in /tmp');
}

describe('converger in a bookworm amd64 chroot', () => {
  let root = '';
  before(async () => {
    root = await freshRootfs(AMD64_SPEC);
  });
  after(async () => {
    const left = await mountsUnder(root);
    for (const m of left.reverse()) await execa('umount', ['-l', m], { reject: false });
    if (root) removeRootfs(root);
    assert.deepEqual(left, [], 'no mount left behind');
  });

  const apply = (plan = demoPlan(), check = false, lines?: string[]): Promise<ApplyReport> =>
    applyToRootfs(root, plan, { arch: 'amd64', check, reporter: quiet, onLine: lines ? (l) => lines.push(l) : undefined });

  test('--check first: reports everything, changes nothing, hides secrets', async () => {
    const resolvBefore = lstatSync(join(root, 'etc/resolv.conf'), { throwIfNoEntry: false });
    const lines: string[] = [];
    const r = await apply(demoPlan(), true, lines);
    assert.equal(r.mode, 'check');
    assert.ok(r.ok);
    const has = (kind: string, target: string, action: string) =>
      assert.ok(r.changes.some((c) => c.kind === kind && c.target === target && c.action === action), `${kind} ${target} ${action}\n${lines.join('\n')}`);
    has('package', 'hello', 'install');
    has('package', 'nano', 'purge');
    has('user', 'syncd', 'created');
    has('file', '/etc/syncpi-demo.conf', 'created');
    has('unit', 'syncpi-demo.service', 'enabled');
    assert.match(r.diffs['/etc/syncpi-demo.conf']!, /^\+greeting = hello$/m);
    assert.match(r.diffs['/etc/syncd/secret.key']!, /secret content: diff hidden/);
    assert.ok(!lines.some((l) => l.includes('s3cr3t')), 'secret never printed');
    // Nothing changed on the target.
    assert.ok(!existsSync(join(root, 'etc/syncpi-demo.conf')));
    assert.equal(await pkgStatus(root, 'hello'), '');
    assert.match(await pkgStatus(root, 'nano'), /^ii/);
    assert.equal(await inRoot(root, 'getent', 'passwd', 'syncd'), '');
    assert.deepEqual(lstatSync(join(root, 'etc/resolv.conf'), { throwIfNoEntry: false })?.mode, resolvBefore?.mode);
    assertNoLeftovers(root);
  });

  test('apply: packages, users, dirs, files with modes and owners, units; handlers skipped in a chroot', async () => {
    const r = await apply();
    assert.ok(r.ok);
    assert.match(await pkgStatus(root, 'hello'), /^ii/);
    assert.doesNotMatch(await pkgStatus(root, 'nano'), /^ii/);
    const stat = (p: string) => inRoot(root, 'stat', '-c', '%a %U %G', p);
    assert.equal(await stat('/etc/syncd/secret.key'), '600 syncd syncd');
    assert.equal(await stat('/etc/syncpi-demo.conf'), '644 root root');
    assert.equal(await stat('/usr/local/bin/demo tool'), '755 root root');
    assert.equal(await stat('/srv/sync'), '750 syncd syncd');
    assert.equal(await stat('/home/pi/.ssh'), '700 pi pi');
    assert.equal(await stat('/home/pi/.ssh/authorized_keys'), '600 pi pi');
    assert.equal(readFileSync(join(root, 'usr/local/bin/demo tool'), 'utf8'), demoPlan().files[3]!.content);
    assert.equal(readFileSync(join(root, 'etc/syncd/secret.key'), 'utf8'), 'api-key: s3cr3t-value\n');
    assert.match(readFileSync(join(root, 'etc/sysctl.d/90-syncpi.conf'), 'utf8'), /^fs\.inotify\.max_user_watches = 204800$/m);
    const syncd = (await inRoot(root, 'getent', 'passwd', 'syncd')).split(':');
    assert.ok(Number(syncd[2]) < 1000, 'system user');
    assert.equal(syncd[6], '/usr/sbin/nologin');
    assert.match(await inRoot(root, 'id', '-nG', 'syncd'), /\bsyncgrp\b/);
    assert.equal(await inRoot(root, 'systemctl', '--root=/', 'is-enabled', 'syncpi-demo.service'), 'enabled');
    assert.equal(await inRoot(root, 'systemctl', '--root=/', 'is-enabled', 'systemd-timesyncd.service'), 'masked');
    assert.deepEqual(
      r.handlers.map((h) => [h.name, h.status]),
      [['daemon-reload', 'skipped-chroot'], ['restart-demo', 'skipped-chroot'], ['syncpi-sysctl', 'skipped-chroot']],
    );
    assert.equal(r.counts.handlers, 0);
    // No temp file next to any written file.
    const tmpLeft = await execa('find', [root, '-xdev', '-name', '.syncpi-tmp.*'], { reject: false });
    assert.equal(tmpLeft.stdout.trim(), '');
    assertNoLeftovers(root);
  });

  test('second apply reports zero changes', async () => {
    const r = await apply();
    assert.ok(r.ok);
    assert.equal(r.counts.changes, 0, JSON.stringify(r.changes));
    assert.deepEqual(r.handlers, []);
  });

  test('drift: --check shows the diff and the restart it would notify, changes nothing; apply repairs it', async () => {
    writeFileSync(join(root, 'etc/syncpi-demo.conf'), 'greeting = bye\n');
    await execa('chmod', ['644', join(root, 'etc/syncd/secret.key')]);
    const c = await apply(demoPlan(), true);
    assert.deepEqual(
      c.changes.map((x) => `${x.kind} ${x.target} ${x.action}`).sort(),
      ['file /etc/syncd/secret.key mode', 'file /etc/syncpi-demo.conf updated'],
    );
    assert.match(c.diffs['/etc/syncpi-demo.conf']!, /^-greeting = bye$/m);
    assert.match(c.diffs['/etc/syncpi-demo.conf']!, /^\+greeting = hello$/m);
    assert.deepEqual(c.handlers.map((h) => h.name), ['restart-demo'], 'restart notified once for two changed files');
    assert.equal(readFileSync(join(root, 'etc/syncpi-demo.conf'), 'utf8'), 'greeting = bye\n');
    const r = await apply();
    assert.equal(r.counts.changes, 2);
    assert.equal(readFileSync(join(root, 'etc/syncpi-demo.conf'), 'utf8'), 'greeting = hello\n');
    assert.equal(await inRoot(root, 'stat', '-c', '%a', '/etc/syncd/secret.key'), '600');
  });

  test('a unit whose [Install] changed is re-enabled: its old links go, the new ones come', async () => {
    const moved = (): ReturnType<typeof demoPlan> => {
      const p = demoPlan();
      const unit = p.files.find((f) => f.path === '/etc/systemd/system/syncpi-demo.service')!;
      unit.content = unit.content.replace('WantedBy=multi-user.target', '# now started with the timers\nWantedBy=timers.target');
      return p;
    };
    const oldLink = join(root, 'etc/systemd/system/multi-user.target.wants/syncpi-demo.service');
    const newLink = join(root, 'etc/systemd/system/timers.target.wants/syncpi-demo.service');
    assert.ok(lstatSync(oldLink, { throwIfNoEntry: false })?.isSymbolicLink(), 'enabled by the first apply');
    const c = await apply(moved(), true);
    assert.ok(c.changes.some((x) => x.kind === 'unit' && x.target === 'syncpi-demo.service' && x.action === 'reenabled'), JSON.stringify(c.changes));
    assert.ok(lstatSync(oldLink, { throwIfNoEntry: false }), '--check changed nothing');
    const r = await apply(moved());
    assert.ok(r.changes.some((x) => x.kind === 'unit' && x.action === 'reenabled'));
    assert.equal(lstatSync(oldLink, { throwIfNoEntry: false }), undefined, 'old link removed');
    assert.ok(lstatSync(newLink, { throwIfNoEntry: false })?.isSymbolicLink(), 'new link made');
    // A comment or blank line in [Install] is no reason to touch the links.
    const again = moved();
    const unit = again.files.find((f) => f.path === '/etc/systemd/system/syncpi-demo.service')!;
    unit.content = unit.content.replace('# now started with the timers\n', '');
    const q = await apply(again);
    assert.deepEqual(q.changes.map((x) => `${x.kind} ${x.action}`), ['file updated']);
    await apply();
    assert.ok(lstatSync(oldLink, { throwIfNoEntry: false }) && !lstatSync(newLink, { throwIfNoEntry: false }), 'back where it was');
  });

  test('a group syncpi added is removed when the plan drops it; one the system had is kept', async () => {
    await inRoot(root, 'usermod', '--append', '--groups', 'users', 'syncd');
    const withUsers = demoPlan();
    withUsers.users[0]!.groups = ['syncgrp', 'users'];
    const r1 = await apply(withUsers);
    assert.ok(!r1.changes.some((x) => x.kind === 'user' && /users/.test(x.action)), 'already a member: nothing to do');
    const dropped = demoPlan();
    dropped.users[0]!.groups = [];
    const c = await apply(dropped, true);
    assert.deepEqual(c.changes.filter((x) => x.kind === 'user').map((x) => `${x.target} ${x.action}`), ['syncd group syncgrp removed']);
    assert.match(await inRoot(root, 'id', '-nG', 'syncd'), /\bsyncgrp\b/, '--check changed nothing');
    const r2 = await apply(dropped);
    assert.equal(r2.changes.filter((x) => x.kind === 'user').length, 1);
    const groups = (await inRoot(root, 'id', '-nG', 'syncd')).split(/\s+/);
    assert.ok(!groups.includes('syncgrp'), 'the group syncpi added is gone');
    assert.ok(groups.includes('users'), 'the group it found is kept');
    assert.equal((await apply(dropped)).counts.changes, 0, 'and that is converged');
    const back = await apply();
    assert.ok(back.changes.some((x) => x.kind === 'user' && x.action === 'group syncgrp'));
    await inRoot(root, 'gpasswd', '--delete', 'syncd', 'users');
  });

  test('verify on the rootfs: offline checks pass, live-only ones are skipped', async () => {
    const out = await verifyRootfs(root, demoPlan(), { arch: 'amd64', reporter: quiet });
    assert.deepEqual(
      out.map((o) => `${o.check.kind}:${o.status}`),
      ['file:pass', 'package-present:pass', 'package-absent:pass', 'service-enabled:pass', 'service-active:skip', 'sysctl:pass', 'http:skip', 'command:pass'],
    );
    assertNoLeftovers(root);
  });

  test('a failing step stops with its name, output and exit code', async () => {
    const plan = emptyPlan({ packages: { install: ['syncpi-no-such-package'], purge: [], keep: [] }, files: [file('/etc/never-written', 'x\n')] });
    await assert.rejects(apply(plan), (e: unknown) => {
      assert.ok(e instanceof ApplyFailed, String(e));
      const f = e.report.failure!;
      assert.equal(f.step, 'packages-install');
      assert.equal(f.exitCode, 100);
      assert.ok(f.output.some((l) => /Unable to locate package syncpi-no-such-package/.test(l)), f.output.join('\n'));
      assert.match(e.message, /step "packages-install" \(exit 100\)/);
      return true;
    });
    assert.ok(!existsSync(join(root, 'etc/never-written')), 'later steps did not run');
    assertNoLeftovers(root);
  });

  test('purging an Essential package is refused', async () => {
    await assert.rejects(apply(emptyPlan({ packages: { install: [], purge: ['sed'], keep: [] } })), (e: unknown) => {
      assert.ok(e instanceof ApplyFailed);
      assert.equal(e.report.failure!.step, 'packages-purge');
      assert.match(e.report.failure!.message, /refusing to purge sed: it is Essential/);
      return true;
    });
    assert.match(await pkgStatus(root, 'sed'), /^ii/);
  });

  test('purging a Priority: required package is refused', async () => {
    const list = await inRoot(root, 'dpkg-query', '-W', '-f=${Package} ${Essential} ${Priority}\n');
    const req = list.split('\n').map((l) => l.split(' ')).find((f) => f[1] !== 'yes' && f[2] === 'required')?.[0];
    assert.ok(req, 'the rootfs has a required, non-essential package');
    await assert.rejects(apply(emptyPlan({ packages: { install: [], purge: [req], keep: [] } })), /it is Priority: required/);
    assert.match(await pkgStatus(root, req), /^ii/);
  });

  test('a temp file left by a killed run beside a managed file is swept by the next apply', async () => {
    const plan = emptyPlan({ files: [file('/etc/syncpi-sweep/a.conf', 'a\n')] });
    await apply(plan);
    writeFileSync(join(root, 'etc/syncpi-sweep/.syncpi-tmp.99999'), 'half');
    const checked = await apply(plan, true);
    assert.ok(checked.changes.some((c) => c.kind === 'tempfile' && c.action === 'remove'));
    assert.ok(existsSync(join(root, 'etc/syncpi-sweep/.syncpi-tmp.99999')), '--check removes nothing');
    const r = await apply(plan);
    assert.deepEqual(r.changes.map((c) => `${c.kind} ${c.target} ${c.action}`), ['tempfile /etc/syncpi-sweep/.syncpi-tmp.99999 removed']);
    assert.deepEqual(readdirSync(join(root, 'etc/syncpi-sweep')), ['a.conf']);
  });

  test('purge globs expand on the target and skip protected packages instead of failing', async () => {
    // "se?" and "base-*" match Essential/required packages; "les?" matches less, which may go.
    const plan = emptyPlan({ packages: { install: [], purge: ['se?', 'base-*', 'les?'], keep: [] } });
    const report = await apply(plan);
    assert.ok(report.changes.some((c) => c.kind === 'package' && c.target === 'less'), JSON.stringify(report.changes));
    assert.ok(!report.changes.some((c) => c.kind === 'package' && /^(sed|base-files|base-passwd)$/.test(c.target)));
    assert.match(await pkgStatus(root, 'sed'), /^ii/);
    assert.match(await pkgStatus(root, 'base-files'), /^ii/);
    assert.doesNotMatch(await pkgStatus(root, 'less'), /^ii/);
    const again = await apply(plan);
    assert.equal(again.changes.length, 0, 'a glob with nothing left to match is a no-op');
  });

  test('a purge whose cascade would remove a protected package is refused (apt-get -s simulation)', async () => {
    // libmagic1 is needed by file, which the plan installs: purging it would take file along.
    const plan = emptyPlan({ packages: { install: ['file'], purge: ['libmagic1'], keep: [] } });
    await assert.rejects(apply(plan), (e: unknown) => {
      assert.ok(e instanceof ApplyFailed);
      assert.match(e.report.failure!.message, /apt would also remove file, which is installed by the plan/);
      return true;
    });
    assert.match(await pkgStatus(root, 'libmagic1'), /^ii/);
    assert.match(await pkgStatus(root, 'file'), /^ii/);
    // In check mode the refusal is reported too.
    await assert.rejects(applyToRootfs(root, plan, { arch: 'amd64', check: true, reporter: quiet }), /would also remove file/);
  });

  test('hostile names and argv reach the target exactly and run nothing', async () => {
    const hostile = "/etc/syncpi/$(touch /PWNED) `touch /PWNED2` 'q' \"dq\" ünï.conf";
    const arg = "$(touch /PWNED3) `id` 'single' \"double\" ; rm -rf / ü";
    const plan = emptyPlan({
      files: [file(hostile, "content $(touch /PWNED4) `x`\n", { notify: ['record-arg'] })],
      handlers: [{ name: 'record-arg', action: 'command', argv: ['/bin/sh', '-c', 'printf %s "$1" > /tmp/handler-arg', 'sh', arg], liveOnly: false }],
    });
    const r = await apply(plan);
    // The value holds slashes, so it is a nested path: each missing directory above it is created first.
    const created: string[] = [];
    for (let d = dirname(hostile); d !== '/etc' && d !== '/'; d = dirname(d)) created.unshift(`dir ${d}`);
    assert.deepEqual(r.changes.map((c) => `${c.kind} ${c.target}`), [...created, `file ${hostile}`]);
    assert.equal(readFileSync(join(root, hostile), 'utf8'), "content $(touch /PWNED4) `x`\n");
    assert.deepEqual(r.handlers.map((h) => [h.name, h.status]), [['record-arg', 'ran']]);
    assert.equal(readFileSync(join(root, 'tmp/handler-arg'), 'utf8'), arg);
    for (const p of ['PWNED', 'PWNED2', 'PWNED3', 'PWNED4']) assert.ok(!existsSync(join(root, p)) && !existsSync(`/${p}`), p);
    assert.equal((await apply(plan)).counts.changes, 0);
  });
});
