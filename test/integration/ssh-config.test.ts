/**
 * The user's OpenSSH client config against real sshd hosts: an alias with a non-default port and
 * a key named only in the config (through the real CLI, with the default ~/.ssh/config), and
 * ProxyJump through a bastion to a host this machine has no route to, with host keys checked on
 * both hops.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { linkHosts, startHosts, stopAll, type TestHost } from '../helpers/hosts.js';
import { demoPlan, DEMO_DIR } from '../helpers/hosts-plan.js';
import { syncpi, testAppliance, writeYaml } from '../helpers/appliance-config.js';
import { SshConnection } from '../../src/targets/ssh-connection.js';
import { UserError } from '../../src/util/errors.js';
import { applyToHost } from '../../src/provision/host.js';
import { archiveOf } from '../../src/targets/apply.js';

let target: TestHost;
let bastion: TestHost;
let dir: string;
/** The target's address on the bastion's LAN, and the bastion's there. */
let lan: { aIp: string; bIp: string };

before(async () => {
  const hs = await startHosts(2, { prefix: 'sshcfg' });
  target = hs[0]!;
  bastion = hs[1]!;
  dir = await mkdtemp(path.join(tmpdir(), 'syncpi-sshcfg-'));
  lan = await linkHosts(bastion, target);
});

after(async () => {
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Bounded wait for a listening port (sshd after a restart). */
async function waitForPort(host: string, port: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = net.connect({ host, port, timeout: 1000 });
      s.once('connect', () => (s.destroy(), res(true)));
      s.once('error', () => res(false));
      s.once('timeout', () => (s.destroy(), res(false)));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${host}:${port} does not listen`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const keyOf = (h: TestHost): string => h.knownHostsLine.split(' ').slice(1).join(' ');

test('an alias from ~/.ssh/config with its own port and a key named only there works for syncpi status; share -p 22 beats the config', async () => {
  const r0 = await target.exec(['sh', '-c', "printf 'Port 22\\nPort 2222\\n' > /etc/ssh/sshd_config.d/10-ports.conf && systemctl restart ssh.service"]);
  assert.equal(r0.exitCode, 0, r0.stderr);
  await waitForPort(target.ip, 2222);

  // A home of its own: the default config path, ~ and %r/%h are what is exercised.
  const home = path.join(dir, 'home');
  mkdirSync(path.join(home, '.ssh'), { recursive: true, mode: 0o700 });
  copyFileSync(target.keyPath, path.join(home, '.ssh', 'grandma_pi'));
  chmodSync(path.join(home, '.ssh', 'grandma_pi'), 0o600);
  // Known only under the name ssh(1) gives a non-22 port: a connection on 22 would be "not known".
  await writeFile(path.join(home, '.ssh', `known_hosts_${target.ip}`), `[${target.ip}]:2222 ${keyOf(target)}\n`);
  await writeFile(
    path.join(home, '.ssh', 'config'),
    ['Host grandma-pi', `  HostName ${target.ip}`, '  Port 2222', '  User pi', '  IdentityFile ~/.ssh/grandma_%r', '  IdentitiesOnly yes', '  UserKnownHostsFile ~/.ssh/known_hosts_%h', 'Host *', '  Port 2000', ''].join('\n'),
  );
  await writeYaml(path.join(dir, 'appliance.yaml'), testAppliance({ pubKey: `${target.keyPath}.pub`, drive: 'none' }));
  const inventory = await writeYaml(path.join(dir, 'fleet.yaml'), { appliance: './appliance.yaml', hosts: { grandma: { address: 'grandma-pi' } } });
  const env = { HOME: home, SSH_AUTH_SOCK: undefined };

  const r = await syncpi(['status', '--json', '--connect-timeout', '10', inventory], { env });
  const report = JSON.parse(r.stdout) as { hosts: Array<{ reachable: boolean; error?: string; rootFreeBytes?: number }> };
  const h = report.hosts[0]!;
  assert.equal(h.reachable, true, `${h.error ?? ''}\n${r.stderr}`);
  assert.ok((h.rootFreeBytes ?? 0) > 0, 'the facts script ran on the host');

  // The command line beats the config: port 22 is judged under the plain name, which is not known.
  const p22 = await syncpi(['share', 'grandma-pi', '-p', '22', '--connect-timeout', '10'], { env });
  assert.equal(p22.exitCode, 2, p22.stderr);
  assert.match(p22.stderr, /host key of grandma-pi is not known .*known_hosts_/);
});

/** The known_hosts files the jump tests use: one per hop, as UserKnownHostsFile names them. */
async function jumpConfig(o: { bastionKey?: string; targetKey?: string } = {}): Promise<string> {
  const khB = path.join(dir, 'kh_bastion');
  const khT = path.join(dir, 'kh_target');
  await writeFile(khB, `${bastion.ip} ${o.bastionKey ?? keyOf(bastion)}\n127.0.0.1 ${keyOf(bastion)}\n`);
  await writeFile(khT, `${lan.bIp} ${o.targetKey ?? keyOf(target)}\n`);
  const file = path.join(dir, 'ssh_config');
  await writeFile(
    file,
    [
      'Host bastion',
      `  HostName ${bastion.ip}`,
      `  UserKnownHostsFile ${khB}`,
      // The bastion's own sshd again, reached through the bastion: a second hop.
      'Host bastion-lo',
      '  HostName 127.0.0.1',
      `  UserKnownHostsFile ${khB}`,
      'Host behind',
      `  HostName ${lan.bIp}`,
      '  ProxyJump bastion',
      `  UserKnownHostsFile ${khT}`,
      'Host behind2',
      `  HostName ${lan.bIp}`,
      '  ProxyJump bastion,bastion-lo',
      `  UserKnownHostsFile ${khT}`,
      'Host *',
      '  User pi',
      `  IdentityFile ${target.keyPath}`,
      '  IdentitiesOnly yes',
      '',
    ].join('\n'),
  );
  return file;
}

/** sshd connections established on a host (bounded wait until `want` holds). */
async function sshdSessions(h: TestHost, want: (n: number) => boolean): Promise<number> {
  let n = -1;
  for (let i = 0; i < 50; i++) {
    const r = await h.exec(['sh', '-c', "ss -Htn state established '( sport = :22 )' | wc -l"]);
    n = Number(r.stdout.trim());
    if (want(n)) return n;
    await new Promise((res) => setTimeout(res, 200));
  }
  return n;
}

test('ProxyJump: the target is reached through the bastion, and closing it closes the jump', async () => {
  const file = await jumpConfig();
  const t = await SshConnection.connect({ host: 'behind', sshConfigFile: file, connectTimeoutMs: 15_000 });
  try {
    const r = await t.exec('echo "$SSH_CONNECTION"; id -un');
    const [conn, who] = r.stdout.trim().split('\n');
    assert.equal(conn!.split(' ')[0], lan.aIp, `the target sees the bastion's LAN address: ${conn}`);
    assert.equal(who, 'pi');
    assert.equal(await sshdSessions(bastion, (n) => n === 1), 1, 'one session on the bastion');
  } finally {
    t.close();
  }
  assert.equal(await sshdSessions(bastion, (n) => n === 0), 0, 'the jump connection is gone');
});

test('ProxyJump with two hops (bastion,bastion-lo) reaches the target through both', async () => {
  const file = await jumpConfig();
  const t = await SshConnection.connect({ host: 'behind2', sshConfigFile: file, connectTimeoutMs: 15_000 });
  try {
    const r = await t.exec('echo "$SSH_CONNECTION"');
    assert.equal(r.stdout.trim().split(' ')[0], lan.aIp);
    // The bastion carries both hops: ours from this machine and the one from its own loopback.
    const lo = await bastion.exec(['sh', '-c', "ss -Htn state established '( sport = :22 )' src 127.0.0.1 | wc -l"]);
    assert.equal(lo.stdout.trim(), '1', 'the second hop entered the bastion from its loopback');
  } finally {
    t.close();
  }
  assert.equal(await sshdSessions(bastion, (n) => n === 0), 0, 'every hop is closed');
});

test('a wrong key on the bastion fails naming the bastion; a wrong key on the target names the target; nothing is applied', async () => {
  const archive = await archiveOf(demoPlan({ version: 1 }));
  const spec = { name: 'behind', address: 'behind' };

  const badBastion = await jumpConfig({ bastionKey: keyOf(target) });
  const r1 = await applyToHost(spec, archive, { policy: { sshConfigFile: badBastion, connectTimeoutMs: 15_000 } });
  assert.equal(r1.status, 'failed');
  assert.equal(r1.error?.exitCode, 2, r1.error?.message);
  assert.match(r1.error!.message, /^host key of jump host bastion has CHANGED/);

  const badTarget = await jumpConfig({ targetKey: keyOf(bastion) });
  const r2 = await applyToHost(spec, archive, { policy: { sshConfigFile: badTarget, connectTimeoutMs: 15_000 } });
  assert.equal(r2.status, 'failed');
  assert.equal(r2.error?.exitCode, 2, r2.error?.message);
  assert.match(r2.error!.message, /^host key of behind has CHANGED/);
  assert.doesNotMatch(r2.error!.message, /jump host/);
  assert.equal(await sshdSessions(bastion, (n) => n === 0), 0, 'the jump connection was closed after the refusal');

  const left = await target.exec(['sh', '-c', `test -e ${DEMO_DIR} && echo present || echo absent`]);
  assert.equal(left.stdout.trim(), 'absent', 'nothing reached the target');
  await assert.rejects(SshConnection.connect({ host: 'behind', sshConfigFile: badTarget }), (e: unknown) => e instanceof UserError && e.message.includes(lan.bIp));
  assert.equal(await readFile(path.join(dir, 'kh_target'), 'utf8'), `${lan.bIp} ${keyOf(bastion)}\n`, 'known_hosts untouched');
  assert.ok(existsSync(path.join(dir, 'kh_bastion')));
});
