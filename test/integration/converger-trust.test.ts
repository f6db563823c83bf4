/**
 * The converger against the events that break a promise, made to happen on a real bookworm
 * chroot: an apply cut right after a rename, a login user's links planted where root writes, a
 * firewall that does not load (with real nft, in a network namespace of its own, next to a
 * fail2ban-like table with a ban), and settings taken out of the plan.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lchownSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { applyToRootfs } from '../../src/targets/rootfs.js';
import { ApplyFailed } from '../../src/targets/apply.js';
import { buildBundle, writeBundleDir } from '../../src/bundle/bundle.js';
import { parseApplyOutput, type ApplyReport } from '../../src/bundle/protocol.js';
import { planFromFile } from '../../src/plan/load.js';
import type { Plan } from '../../src/plan/types.js';
import { createReporter } from '../../src/util/report.js';
import { AMD64_NFT_SPEC, freshRootfs, removeRootfs } from '../helpers/converger-rootfs.js';
import { emptyPlan, file, userWithKeys } from '../helpers/converger-plan.js';
import { minimalYaml, writeConfig } from '../helpers/fixtures.js';

const reporter = createReporter({ json: true });
const quiet = { ...reporter, step: <T,>(_n: string, fn: (p: () => void) => Promise<T>) => fn(() => undefined), info() {}, warn() {}, result() {}, json: true };

async function inRoot(root: string, ...argv: string[]): Promise<string> {
  const r = await execa('chroot', [root, ...argv], { reject: false });
  return `${r.stdout}`.trim();
}

const meta = (root: string, p: string) => inRoot(root, 'stat', '-c', '%a %U %G', p);

interface DirectRun {
  exitCode: number | undefined;
  signal: string | undefined;
  report: ApplyReport;
  stdout: string;
}

/**
 * The converger run straight from a bundle dir inside the chroot, for what applyToRootfs does
 * not offer: an environment variable, --live, another network namespace (nsenter -t PID -n).
 */
async function runDirect(root: string, plan: Plan, opts: { env?: Record<string, string>; live?: boolean; netnsPid?: number; timeoutMs?: number } = {}): Promise<DirectRun> {
  const name = `syncpi-direct-${process.pid}`;
  const dir = join(root, 'tmp', name);
  writeBundleDir(await buildBundle(plan), dir);
  try {
    const inner = ['chroot', root, 'env', ...Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`), 'sh', `/tmp/${name}/apply.sh`, opts.live ? '--live' : '--chroot', `/tmp/${name}`];
    const inNs = opts.netnsPid ? ['nsenter', '-t', String(opts.netnsPid), '-n', '--', ...inner] : inner;
    // timeout(1) signals its whole process group: a subshell stuck in open(2) goes too.
    const argv = opts.timeoutMs ? ['timeout', '-s', 'KILL', String(Math.ceil(opts.timeoutMs / 1000)), ...inNs] : inNs;
    const r = await execa(argv[0]!, argv.slice(1), { reject: false });
    return { exitCode: r.exitCode, signal: r.signal, report: parseApplyOutput(r.stdout), stdout: r.stdout };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const n of readdirSync(join(root, 'tmp'))) if (n.startsWith('syncpi-apply.')) rmSync(join(root, 'tmp', n), { recursive: true, force: true });
  }
}

const piUser = (): Pick<Plan, 'users' | 'dirs' | 'files'> =>
  userWithKeys({ name: 'pi', system: false, home: '/home/pi', shell: '/bin/bash', groups: [], feature: 'system' }, ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests test@laptop']);

describe('converger trust: cut applies, planted links, the firewall, removals', () => {
  let root = '';
  before(async () => {
    root = await freshRootfs(AMD64_NFT_SPEC);
  });
  after(() => {
    if (root) removeRootfs(root);
  });

  const apply = (plan: Plan, check = false, lines?: string[]): Promise<ApplyReport> =>
    applyToRootfs(root, plan, { arch: 'amd64', check, reporter: quiet, onLine: lines ? (l) => lines.push(l) : undefined });

  test('an apply killed right after a notifying file is renamed into place runs the handler on the rerun', async () => {
    const target = '/etc/syncpi-cut/a.conf';
    const plan = emptyPlan({
      files: [file(target, 'v1\n', { notify: ['mark'] })],
      handlers: [{ name: 'mark', action: 'command', argv: ['sh', '-c', 'echo ran >>/var/tmp/syncpi-mark'], liveOnly: false }],
    });
    const cut = await runDirect(root, plan, { env: { SYNCPI_TEST_KILL_AFTER_RENAME: target } });
    assert.equal(cut.signal, 'SIGKILL', cut.stdout);
    assert.equal(readFileSync(join(root, target), 'utf8'), 'v1\n', 'the new file is in place');
    assert.ok(!existsSync(join(root, 'var/tmp/syncpi-mark')), 'the handler had not run yet');
    const r = await apply(plan);
    assert.deepEqual(r.changes.filter((c) => c.kind === 'file'), [], 'the file is converged already');
    assert.deepEqual(r.handlers.map((h) => [h.name, h.status]), [['mark', 'ran']]);
    assert.equal(readFileSync(join(root, 'var/tmp/syncpi-mark'), 'utf8'), 'ran\n');
    assert.equal(await meta(root, '/var/lib/syncpi'), '700 root root', 'the record of it is root\'s alone');
    assert.deepEqual((await apply(plan)).handlers, [], 'run once, then forgotten');
  });

  test("a login user's ~/.ssh swapped for a link to /etc: the apply refuses, /etc keeps its owner and mode", async () => {
    const plan = emptyPlan(piUser());
    await apply(plan);
    const [uid, gid] = (await inRoot(root, 'sh', '-c', 'id -u pi; id -g pi')).split('\n').map(Number);
    const ssh = join(root, 'home/pi/.ssh');
    rmSync(ssh, { recursive: true });
    symlinkSync('/etc', ssh);
    lchownSync(ssh, uid!, gid!);
    const etcBefore = await meta(root, '/etc');
    for (const check of [true, false]) {
      await assert.rejects(apply(plan, check), (e: unknown) => {
        assert.ok(e instanceof ApplyFailed, String(e));
        assert.equal(e.report.failure!.step, 'dirs');
        assert.match(e.report.failure!.message, /\/home\/pi\/\.ssh.*symbolic link/);
        return true;
      });
    }
    assert.equal(await meta(root, '/etc'), etcBefore, '/etc keeps its owner and mode');
    assert.ok(!existsSync(join(root, 'etc/authorized_keys')), 'nothing written through the link');
    rmSync(ssh);
  });

  test("a login user's authorized_keys turned into a link to a root-only file: replaced, never followed or shown", async () => {
    const plan = emptyPlan(piUser());
    rmSync(join(root, 'home/pi/.ssh'), { recursive: true, force: true });
    await apply(plan);
    const [uid, gid] = (await inRoot(root, 'sh', '-c', 'id -u pi; id -g pi')).split('\n').map(Number);
    writeFileSync(join(root, 'etc/syncpi-victim'), 'root only secret\n', { mode: 0o600 });
    const keys = join(root, 'home/pi/.ssh/authorized_keys');
    rmSync(keys);
    symlinkSync('/etc/syncpi-victim', keys);
    lchownSync(keys, uid!, gid!);
    const lines: string[] = [];
    const c = await apply(plan, true, lines);
    assert.ok(c.changes.some((x) => x.target === '/home/pi/.ssh/authorized_keys' && x.action === 'updated'), JSON.stringify(c.changes));
    assert.ok(!lines.some((l) => l.includes('root only secret')), 'the link target is not shown');
    await apply(plan);
    assert.equal(readFileSync(join(root, 'etc/syncpi-victim'), 'utf8'), 'root only secret\n');
    assert.equal(await meta(root, '/etc/syncpi-victim'), '600 root root');
    assert.ok(lstatSync(keys).isFile(), 'the link is replaced by the file');
    assert.equal(await meta(root, '/home/pi/.ssh/authorized_keys'), '600 pi pi');
    assert.equal(readdirSync(join(root, 'home/pi/.ssh')).filter((n) => n.startsWith('.syncpi-tmp')).length, 0);
  });

  test("a FIFO in place of a login user's authorized_keys is replaced, not read (the apply does not hang)", async () => {
    const plan = emptyPlan(piUser());
    await apply(plan);
    const keys = '/home/pi/.ssh/authorized_keys';
    rmSync(join(root, keys));
    await execa('chroot', [root, 'setpriv', '--reuid=pi', '--regid=pi', '--init-groups', 'mkfifo', keys]);
    const r = await runDirect(root, plan, { timeoutMs: 30_000 });
    assert.equal(r.exitCode, 0, `the apply hangs on the FIFO (or fails)\n${r.stdout}`);
    assert.ok(r.report.changes.some((c) => c.target === keys && c.action === 'updated'), r.stdout);
    assert.ok(lstatSync(join(root, keys)).isFile());
    assert.equal(await meta(root, keys), '600 pi pi');
  });

  test('an image build refuses a firewall that nft -c rejects and keeps the old file', async () => {
    const good = firewallPlan('');
    await apply(good);
    const before = readFileSync(join(root, 'etc/nftables.conf'), 'utf8');
    const bad = firewallPlan('', '\tchain broken { this is not nft }\n');
    await assert.rejects(apply(bad), /\/etc\/nftables\.conf is refused by nft -c -f %s/);
    assert.equal(readFileSync(join(root, 'etc/nftables.conf'), 'utf8'), before);
  });

  describe('in a network namespace of its own, with a fail2ban table holding a ban', () => {
    let ns: ChildProcess | undefined;
    let pid = 0;
    const nft = async (...args: string[]) => execa('nsenter', ['-t', String(pid), '-n', '--', 'nft', ...args], { reject: false });
    before(async () => {
      ns = spawn('unshare', ['-n', 'sleep', '600'], { stdio: 'ignore' });
      pid = ns.pid!;
      // unshare execs sleep once the namespace exists; wait for that.
      for (let i = 0; i < 50 && (await execa('readlink', [`/proc/${pid}/ns/net`])).stdout === (await execa('readlink', ['/proc/self/ns/net'])).stdout; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const f2b = await execa('nsenter', ['-t', String(pid), '-n', '--', 'nft', '-f', '-'], {
        input: 'table inet f2b-table {\n\tset addr-set-sshd {\n\t\ttype ipv4_addr\n\t\telements = { 192.0.2.7 }\n\t}\n\tchain f2b-chain {\n\t\ttype filter hook input priority -1; policy accept;\n\t\ttcp dport 22 ip saddr @addr-set-sshd reject\n\t}\n}\n',
        reject: false,
      });
      assert.equal(f2b.exitCode, 0, f2b.stderr);
    });
    after(() => {
      if (ns?.pid) process.kill(ns.pid, 'SIGKILL');
    });

    const banned = async () => (await nft('list', 'set', 'inet', 'f2b-table', 'addr-set-sshd')).stdout.includes('192.0.2.7');
    const sshPort = async () => /tcp dport (\d+) accept comment "SSH"/.exec((await nft('list', 'table', 'inet', 'syncpi')).stdout)?.[1];

    test('reloading the firewall keeps the ban; a ruleset nft -c rejects is refused with the old file and rules kept', async () => {
      writeFileSync(join(root, 'etc/nftables.conf'), '#!/usr/sbin/nft -f\n# before syncpi\n');
      const first = await runDirect(root, firewallPlan(''), { live: true, netnsPid: pid });
      assert.equal(first.exitCode, 0, first.stdout);
      assert.deepEqual(first.report.handlers.map((h) => [h.name, h.status]), [['reload-firewall', 'ran']]);
      assert.equal(await sshPort(), '22');
      assert.ok(await banned(), 'the ban survives the first load');

      const moved = await runDirect(root, firewallPlan('hardening:\n  ssh:\n    port: 2222\n'), { live: true, netnsPid: pid });
      assert.equal(moved.exitCode, 0, moved.stdout);
      assert.equal(await sshPort(), '2222', 'the reload took effect');
      assert.ok(await banned(), 'the ban survives a reload');
      const kept = readFileSync(join(root, 'etc/nftables.conf'), 'utf8');

      const broken = await runDirect(root, firewallPlan('', '\tchain broken { this is not nft }\n'), { live: true, netnsPid: pid });
      assert.equal(broken.exitCode, 1, broken.stdout);
      assert.equal(broken.report.failure?.step, 'files');
      assert.match(broken.report.failure!.message, /the new \/etc\/nftables\.conf is refused by nft; the old file is kept/);
      assert.ok(broken.report.failure!.output.some((l) => /syntax error/.test(l)), broken.report.failure!.output.join('\n'));
      assert.equal(readFileSync(join(root, 'etc/nftables.conf'), 'utf8'), kept, 'the old file is kept');
      assert.equal(await sshPort(), '2222', 'the running rules are kept');
      assert.ok(await banned());
      assert.deepEqual(readdirSync(join(root, 'etc')).filter((n) => n.startsWith('.syncpi-tmp')), [], 'the refused temp file is gone');
    });
  });

  test('a package syncpi installed is purged when the plan drops it; one that was there before stays', async () => {
    const status = (p: string) => inRoot(root, 'dpkg-query', '-W', '-f=${db:Status-Abbrev}', p);
    assert.match(await status('less'), /^ii/, 'the rootfs ships less');
    const withHello = emptyPlan({ packages: { install: ['hello', 'less'], purge: [], keep: [] } });
    const r = await apply(withHello);
    assert.deepEqual(r.changes.map((c) => `${c.kind} ${c.target} ${c.action}`), ['package hello installed']);
    const bare = emptyPlan();
    const c = await apply(bare, true);
    assert.deepEqual(c.changes.map((x) => `${x.kind} ${x.target} ${x.action}`), ['package hello purge']);
    assert.match(await status('hello'), /^ii/, '--check purged nothing');
    await apply(bare);
    assert.doesNotMatch(await status('hello'), /^ii/, 'hello is gone');
    assert.match(await status('less'), /^ii/, 'less was there before syncpi: it stays');
    assert.equal((await apply(bare)).counts.changes, 0);
  });

  test('what leaves the plan leaves the system: unit, sudoers, Wi-Fi profile, dirs, accounts; nothing syncpi did not make', async () => {
    const unit = '/etc/systemd/system/syncpi-rmtest.service';
    const link = join(root, 'etc/systemd/system/multi-user.target.wants/syncpi-rmtest.service');
    const sudoers = '/etc/sudoers.d/010-syncpi';
    const wifi = '/etc/NetworkManager/system-connections/syncpi-wifi-0.nmconnection';
    mkdirSync(join(root, 'etc/sudoers.d'), { recursive: true });
    writeFileSync(join(root, 'etc/sudoers.d/foreign'), '# not syncpi\'s\n', { mode: 0o440 });
    writeFileSync(join(root, 'etc/systemd/system/foreign.service'), '[Service]\nExecStart=/bin/true\n');
    writeFileSync(join(root, 'etc/syncpi-found.conf'), 'theirs\n');
    const full = emptyPlan({
      users: [{ name: 'rmuser', system: true, home: '/var/lib/rmuser', shell: '/usr/sbin/nologin', groups: ['rmgroup'], feature: 'services' }],
      dirs: [{ path: '/etc/syncpi-rm/sub', mode: '0755', owner: 'root', group: 'root', feature: 'services' }],
      files: [
        file(unit, '[Unit]\nDescription=removal test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n', { notify: ['daemon-reload'] }),
        file(sudoers, 'pi ALL=(ALL) NOPASSWD: ALL\n', { mode: '0440' }),
        file(wifi, '[wifi-security]\npsk=s3cr3t-psk\n', { mode: '0600', secret: true, notify: ['nm-reload'] }),
        file('/etc/syncpi-found.conf', 'ours\n'),
        file('/etc/syncpi-rm/deep/x.conf', 'x\n'),
      ],
      units: { enable: ['syncpi-rmtest.service'], disable: [], mask: [] },
      handlers: [
        { name: 'daemon-reload', action: 'daemon-reload', liveOnly: true },
        { name: 'nm-reload', action: 'command', argv: ['nmcli', 'connection', 'reload'], liveOnly: true },
      ],
    });
    await apply(full);
    assert.ok(lstatSync(link).isSymbolicLink(), 'enabled');
    const gone = [unit, sudoers, wifi, '/etc/syncpi-rm/deep/x.conf', '/etc/syncpi-rm', '/etc/NetworkManager'];
    for (const p of gone) assert.ok(existsSync(join(root, p)), p);

    const bare = emptyPlan();
    const lines: string[] = [];
    const c = await apply(bare, true, lines);
    const listed = c.changes.map((x) => `${x.kind} ${x.target} ${x.action}`);
    for (const want of [
      'unit syncpi-rmtest.service disabled',
      `file ${unit} remove`,
      `file ${sudoers} remove`,
      `file ${wifi} remove`,
      'file /etc/syncpi-rm/deep/x.conf remove',
      'dir /etc/syncpi-rm/deep remove',
      'dir /etc/syncpi-rm/sub remove',
      'dir /etc/syncpi-rm remove',
      'dir /etc/NetworkManager/system-connections remove',
      'dir /etc/NetworkManager remove',
      'user rmuser remove',
      'group rmgroup remove',
    ]) {
      assert.ok(listed.includes(want), `${want}\n${listed.join('\n')}`);
    }
    assert.ok(!listed.some((l) => /foreign|syncpi-found/.test(l) || l.startsWith('dir /etc/sudoers.d ')), listed.join('\n'));
    assert.ok(c.handlers.some((h) => h.name === 'nm-reload'), 'the Wi-Fi removal notifies nm-reload, which the plan no longer has');
    assert.ok(!lines.some((l) => l.includes('s3cr3t-psk')));
    for (const p of gone) assert.ok(existsSync(join(root, p)), `--check removed nothing: ${p}`);
    assert.ok(lstatSync(link).isSymbolicLink(), '--check left the unit enabled');

    const r = await apply(bare);
    for (const p of gone) assert.ok(!existsSync(join(root, p)), `removed: ${p}`);
    assert.equal(lstatSync(link, { throwIfNoEntry: false }), undefined, 'the unit link is gone');
    assert.equal(await inRoot(root, 'getent', 'passwd', 'rmuser'), '');
    assert.equal(await inRoot(root, 'getent', 'group', 'rmgroup'), '');
    assert.equal(readFileSync(join(root, 'etc/sudoers.d/foreign'), 'utf8'), '# not syncpi\'s\n', 'a file syncpi never wrote survives');
    assert.ok(existsSync(join(root, 'etc/sudoers.d')), 'a directory syncpi did not make stays');
    assert.ok(existsSync(join(root, 'etc/systemd/system/foreign.service')));
    assert.equal(readFileSync(join(root, 'etc/syncpi-found.conf'), 'utf8'), 'ours\n', 'a file that was there before syncpi is left in place');
    assert.ok(r.warnings.some((w) => w.includes('/etc/syncpi-found.conf: left in place')), r.warnings.join('\n'));
    assert.deepEqual(r.handlers.map((h) => [h.name, h.status]), [['daemon-reload', 'skipped-chroot'], ['nm-reload', 'skipped-chroot']]);
    assert.equal((await apply(bare)).counts.changes, 0, 'and that is converged');
  });
});

/** A plan with only the real firewall (rendered from appliance.yaml) and its reload handler. */
function firewallPlan(extraYaml: string, appendRules = ''): Plan {
  const plan = planFromFile(writeConfig(minimalYaml(extraYaml))).plan;
  const fw = plan.files.find((f) => f.path === '/etc/nftables.conf')!;
  assert.deepEqual(fw.validate, ['nft', '-c', '-f', '%s']);
  const content = appendRules ? fw.content.replace(/\n}\n*$/, `\n${appendRules}}\n`) : fw.content;
  return emptyPlan({ files: [{ ...fw, content }], handlers: plan.handlers.filter((h) => h.name === 'reload-firewall').map((h) => ({ ...h, liveOnly: true })) });
}
