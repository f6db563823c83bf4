/**
 * `syncpi verify`, `share` and `panel` against a real host (systemd-nspawn container with real
 * sshd and systemd): on-host checks through the converger's verify.sh, HTTP through the SSH
 * connection, the SSH password probe, the device ID with its QR code, and the panel tunnel.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { startHosts, stopAll, writeKnownHosts, type TestHost } from '../helpers/hosts.js';
import { demoPlan } from '../helpers/hosts-plan.js';
import { applyToHost } from '../../src/provision/host.js';
import { archiveOf } from '../../src/targets/apply.js';
import { SshConnection } from '../../src/targets/ssh-connection.js';
import { SshTarget } from '../../src/targets/ssh.js';
import { sshAuthMethods, verifyLive } from '../../src/verify/live.js';
import type { Plan } from '../../src/plan/types.js';

let host: TestHost;
let dir: string;
let kh: string;
const cli = (args: string[], o: { timeout?: number } = {}) =>
  execa(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { reject: false, stdin: 'ignore', timeout: o.timeout ?? 120_000 });

before(async () => {
  host = (await startHosts(1, { prefix: 'verify' }))[0]!;
  dir = await mkdtemp(path.join(tmpdir(), 'syncpi-hostcmd-'));
  kh = await writeKnownHosts(path.join(dir, 'known_hosts'), [host]);
  // syncthing on the host, from the hosts' local repository
  const rep = await applyToHost({ name: host.name, address: host.ip, user: host.user, port: host.port }, await archiveOf(demoPlan({ version: 1 })), {
    check: false,
    policy: { identities: [host.keyPath], knownHostsFile: kh },
  });
  assert.notEqual(rep.status, 'failed', JSON.stringify(rep.failure ?? rep.error));
  // a panel stand-in on the host's loopback only: reachable through SSH, not from here
  const st = await host.exec(['sh', '-c', 'cd /tmp && (setsid python3 -m http.server 8384 --bind 127.0.0.1 >/dev/null 2>&1 &) ; sleep 1']);
  assert.equal(st.exitCode, 0, st.stderr);
});

after(async () => {
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a test host has no route beyond its veth peer, and this machine forwards nothing from it', async () => {
  const v4 = (await host.exec(['ip', '-4', 'route', 'show', 'table', 'all'])).stdout.trim().split('\n').map((l) => l.trim()).filter((l) => !/^(local|broadcast) /.test(l));
  const net = host.ip.replace(/\.\d+$/, '.0');
  assert.deepEqual(v4, [`${net}/30 dev eth0 proto kernel scope link src ${host.ip}`]);
  const v6 = (await host.exec(['ip', '-6', 'route', 'show', 'table', 'all'])).stdout.trim().split('\n').filter((l) => l && !/ dev lo /.test(l));
  assert.deepEqual(v6, [], 'IPv6 routes other than loopback');
  const out = await host.exec(['ip', 'route', 'get', '192.0.2.1']);
  assert.notEqual(out.exitCode, 0, `a route out: ${out.stdout}`);
  assert.match(out.stderr, /unreachable/i);
  const peer = host.ip.replace(/\d+$/, '1');
  const veth = (await execa('ip', ['-o', '-4', 'addr', 'show', 'to', `${peer}/32`])).stdout.split(/\s+/)[1]!;
  assert.match(veth, /^spt\d+h$/);
  assert.equal((await execa('cat', [`/proc/sys/net/ipv4/conf/${veth}/forwarding`])).stdout.trim(), '0');
  assert.equal((await execa('cat', [`/proc/sys/net/ipv6/conf/${veth}/disable_ipv6`])).stdout.trim(), '1');
});

function planWith(checks: Plan['checks']): Plan {
  return { ...demoPlan({ version: 1 }), checks };
}

test('verify runs on-host checks in one run and the panel and SSH checks from here', async () => {
  const ssh = await SshConnection.connect({ host: host.ip, port: host.port, user: host.user, identities: [host.keyPath], knownHostsFile: kh });
  try {
    const plan = planWith([
      { kind: 'service-active', unit: 'syncpi-demo.service', description: 'demo runs' },
      { kind: 'package-present', name: 'syncthing', description: 'syncthing installed' },
      { kind: 'package-absent', name: 'gcc', description: 'no compiler' },
      { kind: 'service-active', unit: 'syncpi-missing.service', description: 'a unit that does not exist' },
      { kind: 'http', url: 'http://127.0.0.1:8384/', expectUnauthenticated: 200, tls: false, description: 'loopback panel answers' },
      { kind: 'http', url: 'http://127.0.0.1:8384/', expectUnauthenticated: 401, tls: false, description: 'loopback panel wants a password' },
      { kind: 'ssh-password-refused', description: 'no password logins' },
    ]);
    const out = await verifyLive(new SshTarget(ssh), plan, { sshHost: host.ip, sshPort: host.port, user: host.user, panel: null });
    const by = Object.fromEntries(out.map((o) => [o.check.description, o]));
    assert.equal(by['demo runs']!.status, 'pass', by['demo runs']!.detail);
    assert.equal(by['syncthing installed']!.status, 'pass');
    assert.equal(by['no compiler']!.status, 'pass');
    assert.equal(by['a unit that does not exist']!.status, 'fail');
    assert.equal(by['loopback panel answers']!.status, 'pass', by['loopback panel answers']!.detail);
    assert.equal(by['loopback panel wants a password']!.status, 'fail');
    assert.match(by['loopback panel wants a password']!.detail, /→ 200/);
    assert.equal(by['no password logins']!.status, 'pass', by['no password logins']!.detail);
  } finally {
    ssh.close();
  }
});

/** sshd re-executes itself on reload: ask again until the new configuration answers (bounded). */
async function methodsAfterReload(want: (m: string[]) => boolean): Promise<string[]> {
  let last: string[] = [];
  for (let i = 0; i < 20; i++) {
    last = await sshAuthMethods(host.ip, host.port, host.user).catch(() => []);
    if (last.length && want(last)) return last;
    await new Promise((r) => setTimeout(r, 500));
  }
  return last;
}

test('the SSH probe sees password logins when the server offers them', async () => {
  const on = await host.exec(['sh', '-c', "printf 'PasswordAuthentication yes\\n' > /etc/ssh/sshd_config.d/00-allow-pw.conf && systemctl reload ssh"]);
  assert.equal(on.exitCode, 0, on.stderr);
  try {
    const methods = await methodsAfterReload((m) => m.includes('password'));
    assert.ok(methods.includes('password'), `methods: ${methods.join(',')}`);
  } finally {
    await host.exec(['sh', '-c', 'rm -f /etc/ssh/sshd_config.d/00-allow-pw.conf && systemctl reload ssh']);
  }
  const after = await methodsAfterReload((m) => !m.includes('password'));
  assert.ok(after.length > 0 && !after.includes('password'), `methods: ${after.join(',')}`);
});

test('share prints the device ID syncthing has and a QR code', async () => {
  const gen = await host.exec(['sh', '-c', 'install -d -o syncthing -g syncthing /var/lib/syncthing 2>/dev/null || install -d /var/lib/syncthing; syncthing generate --home=/var/lib/syncthing 2>&1 || syncthing -generate=/var/lib/syncthing 2>&1']);
  const id = /Device ID: ([A-Z2-7-]{63})/.exec(gen.stdout)?.[1];
  assert.ok(id, gen.stdout + gen.stderr);
  const r = await cli(['share', `${host.user}@${host.ip}`, '-p', String(host.port), '-i', host.keyPath, '--known-hosts', kh]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.ok(r.stdout.includes(id), r.stdout);
  assert.match(r.stdout, /[▄▀█]{10}/, 'a QR code drawn with block characters');
  const bad = await cli(['share', `${host.user}@${host.ip}`, '-p', String(host.port), '-i', host.keyPath, '--known-hosts', path.join(dir, 'empty_known_hosts')]);
  assert.equal(bad.exitCode, 2, 'an unknown host key is refused as bad input');
  assert.match(bad.stderr, /not known/);
});

test('panel opens a tunnel to the loopback-only panel, prints the URL and closes on Ctrl-C', async () => {
  const child = execa(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'panel', `${host.user}@${host.ip}`, '-p', String(host.port), '-i', host.keyPath, '--known-hosts', kh], {
    reject: false,
    stdin: 'ignore',
    timeout: 120_000,
  });
  try {
    const url = await new Promise<string>((res, rej) => {
      let buf = '';
      const t = setTimeout(() => rej(new Error(`no URL printed: ${buf}`)), 60_000);
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const m = /(https?:\/\/127\.0\.0\.1:\d+\/)/.exec(buf);
        if (m) {
          clearTimeout(t);
          res(m[1]!);
        }
      });
    });
    assert.ok(url.startsWith('http://'), 'a plain-HTTP panel is printed as http');
    const r = await fetch(url, { signal: AbortSignal.timeout(15_000) });
    assert.equal(r.status, 200);
    await r.text();
  } finally {
    child.kill('SIGINT');
  }
  const done = await child;
  assert.equal(done.exitCode, 0, done.stderr);
});
