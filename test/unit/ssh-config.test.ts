/**
 * The user's OpenSSH client config read as ssh(1) reads it: config texts in, connection settings
 * out. Command line beats config, the first value obtained wins, defaults come last.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadSshConfig, parseProxyJump, parseSshConfig, resolveSsh, type SshResolved, type SshWanted } from '../../src/targets/ssh-config.js';
import { UserError } from '../../src/util/errors.js';

const ctx = { home: '/home/me', localUser: 'me', localHost: 'laptop' };
const resolve = (text: string, w: Partial<SshWanted> & { host: string }): SshResolved =>
  resolveSsh(parseSshConfig(text, '/home/me/.ssh/config'), { defaultUser: 'pi', ...w }, ctx);

const CASES: Array<{ name: string; config: string; want: Partial<SshWanted> & { host: string }; expect: Partial<SshResolved> & { files?: string[] } }> = [
  {
    name: 'an alias gives address, port, user and key; tokens and ~ expand with the final values',
    config: 'Host grandma\n  HostName 10.0.0.5\n  Port 2222\n  User alice\n  IdentityFile ~/.ssh/%r@%h:%p-%n-%u-%d-%l-%%\n',
    want: { host: 'grandma' },
    expect: { host: '10.0.0.5', port: 2222, user: 'alice', files: ['/home/me/.ssh/alice@10.0.0.5:2222-grandma-me-/home/me-laptop-%'] },
  },
  {
    name: 'no entry: the name as typed, port 22, the default user, no keys named',
    config: 'Host other\n  Port 2222\n',
    want: { host: 'pi.local' },
    expect: { host: 'pi.local', port: 22, user: 'pi', files: [], proxyJump: [], identitiesOnly: false },
  },
  {
    name: 'the first value obtained wins: a specific block before Host *',
    config: 'Host grandma\n  Port 2222\nHost *\n  Port 2000\n  User bob\n',
    want: { host: 'grandma' },
    expect: { port: 2222, user: 'bob' },
  },
  {
    name: 'the first value obtained wins: Host * before a specific block',
    config: 'Host *\n  Port 2000\nHost grandma\n  Port 3000\n  User carol\n',
    want: { host: 'grandma' },
    expect: { port: 2000, user: 'carol' },
  },
  {
    name: 'wildcards and a negated pattern',
    config: 'Host *.home !nas.home\n  User homeuser\nHost pi?\n  Port 2201\n',
    want: { host: 'kitchen.home' },
    expect: { user: 'homeuser', port: 22 },
  },
  {
    name: 'a negated pattern excludes the host from the block',
    config: 'Host *.home !nas.home\n  User homeuser\n',
    want: { host: 'nas.home' },
    expect: { user: 'pi' },
  },
  {
    name: 'command-line port, user and known_hosts beat the config',
    config: 'Host grandma\n  Port 2222\n  User alice\n  UserKnownHostsFile ~/.ssh/kh_grandma\n',
    want: { host: 'grandma', port: 22, user: 'root', knownHostsFile: '/tmp/kh' },
    expect: { port: 22, user: 'root', knownHostsFile: '/tmp/kh' },
  },
  {
    name: 'IdentityFile accumulates over matching blocks, after the command line',
    config: 'Host grandma\n  IdentityFile ~/.ssh/a\nHost *\n  IdentityFile %d/.ssh/b\n  IdentitiesOnly yes\n',
    want: { host: 'grandma', identities: ['/keys/cli'] },
    expect: { files: ['/keys/cli', '/home/me/.ssh/a', '/home/me/.ssh/b'], identitiesOnly: true },
  },
  {
    name: 'keywords are case-insensitive, key=value works, the first UserKnownHostsFile is used',
    config: 'host grandma\n  hostname=10.0.0.9\n  PORT 2022\n  userknownhostsfile ~/.ssh/kh_%h /etc/ssh/other\n',
    want: { host: 'grandma' },
    expect: { host: '10.0.0.9', port: 2022, knownHostsFile: '/home/me/.ssh/kh_10.0.0.9' },
  },
  {
    name: 'HostName with %h builds the address from the name as typed',
    config: 'Host *.lan\n  HostName %h.example.internal\n',
    want: { host: 'pi.lan' },
    expect: { host: 'pi.lan.example.internal' },
  },
  {
    name: 'ProxyJump: comma-separated hops with user and port',
    config: 'Host grandma\n  ProxyJump admin@bastion:2222,hop2\n',
    want: { host: 'grandma' },
    expect: { proxyJump: [{ user: 'admin', host: 'bastion', port: 2222 }, { host: 'hop2' }] },
  },
  {
    name: 'ProxyJump none in the first matching block turns off a later Host * jump',
    config: 'Host bastion\n  ProxyJump none\nHost *\n  ProxyJump bastion\n',
    want: { host: 'bastion' },
    expect: { proxyJump: [] },
  },
  {
    name: 'ProxyCommand none in the first matching block means a direct connection',
    config: 'Host direct\n  ProxyCommand none\nHost *\n  ProxyCommand nc %h %p\n',
    want: { host: 'direct' },
    expect: { proxyJump: [], host: 'direct' },
  },
  {
    name: 'a ProxyJump obtained before a ProxyCommand is used',
    config: 'Host *\n  ProxyJump b\n  ProxyCommand nc %h %p\n',
    want: { host: 'other' },
    expect: { proxyJump: [{ host: 'b' }] },
  },
  {
    name: 'Match host is judged against the HostName',
    config: 'Host g\n  HostName 10.1.1.1\nMatch host 10.1.1.1\n  User matched\n',
    want: { host: 'g' },
    expect: { host: '10.1.1.1', user: 'matched' },
  },
];

for (const c of CASES) {
  test(`ssh config: ${c.name}`, () => {
    const r = resolve(c.config, c.want);
    const { files, ...rest } = c.expect;
    for (const [k, v] of Object.entries(rest)) assert.deepEqual(r[k as keyof SshResolved], v, k);
    if (files) assert.deepEqual(r.identities.map((i) => i.file), files);
  });
}

test('ssh config: command-line identities are marked as flags, config ones as config', () => {
  const r = resolve('Host *\n  IdentityFile ~/.ssh/c\n', { host: 'x', identities: ['/k'] });
  assert.deepEqual(r.identities, [{ file: '/k', from: 'flag' }, { file: '/home/me/.ssh/c', from: 'config' }]);
});

test('ssh config: ProxyJump parsing', () => {
  assert.deepEqual(parseProxyJump('none', 'x'), []);
  assert.deepEqual(parseProxyJump('ssh://u@h:1', 'x'), [{ user: 'u', host: 'h', port: 1 }]);
  assert.deepEqual(parseProxyJump('[fd00::1]:2222, b', 'x'), [{ host: 'fd00::1', port: 2222 }, { host: 'b' }]);
  for (const bad of ['a b', 'h:0', 'h:99999', 'u@', ',']) assert.throws(() => parseProxyJump(bad, 'F'), UserError, bad);
});

const ERRORS: Array<{ name: string; config: string; re: RegExp }> = [
  { name: 'Include is refused with its line', config: '# mine\nInclude ~/.ssh/config.d/*\n', re: /config:2: Include is not supported/ },
  { name: 'Match exec is refused with its line', config: 'Host a\n  Port 1\nMatch exec "true"\n  User x\n', re: /config:3: Match exec is not supported/ },
  { name: 'Match canonical is refused', config: 'Match canonical host *.lan\n  User x\n', re: /config:1: Match canonical is not supported/ },
  { name: 'a bad Port names the file and the host', config: 'Host g\n  Port twenty\n', re: /config \(Host g\): Port: port "twenty" is not a whole number/ },
  { name: 'an unsupported token is named', config: 'Host g\n  IdentityFile ~/.ssh/%C\n', re: /IdentityFile ~\/\.ssh\/%C: token %C is not supported/ },
  { name: 'a ProxyCommand for the host is refused, not bypassed', config: 'Host g\n  ProxyCommand nc -X 5 -x proxy:1080 %h %p\n', re: /config \(Host g\): ProxyCommand is not supported; reach the host with ProxyJump/ },
  { name: 'a bad ProxyJump is named', config: 'Host g\n  ProxyJump a@b@c\n', re: /ProxyJump "a@b@c" is not \[USER@\]HOST\[:PORT\]/ },
];

for (const c of ERRORS) {
  test(`ssh config error: ${c.name}`, () => {
    assert.throws(() => resolve(c.config, { host: 'g' }), (e: unknown) => e instanceof UserError && c.re.test(e.message) && !e.message.includes('\n'));
  });
}

test('ssh config file: default only when present, an explicit file must exist, none reads nothing', () => {
  const home = mkdtempSync(path.join(tmpdir(), 'syncpi-sshcfg-'));
  try {
    const local = { ...ctx, home };
    assert.equal(loadSshConfig(undefined, local), null);
    assert.equal(loadSshConfig(null, local), null);
    assert.throws(() => loadSshConfig(path.join(home, 'nope'), local), /--ssh-config .*nope: no such file/);
    writeFileSync(path.join(home, 'cfg'), 'Host a\n  Port 2\n');
    const f = loadSshConfig(path.join(home, 'cfg'), local)!;
    assert.equal(resolveSsh(f, { host: 'a', defaultUser: 'pi' }, local).port, 2);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
