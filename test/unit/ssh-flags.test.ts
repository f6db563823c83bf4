/**
 * From a command's SSH flags to the settings a connection uses: the flags become options once
 * (cli/ssh-flags.ts), the connection lays them over the SSH config and the defaults
 * (resolveConnection). Each case is a command line and a config file, as a user would have them.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connectPolicy, parseDestination, sshOptions, type SshCliOptions } from '../../src/cli/ssh-flags.js';
import { resolveConnection } from '../../src/targets/ssh-connection.js';
import type { SshResolved } from '../../src/targets/ssh-config.js';
import { UserError } from '../../src/util/errors.js';

const home = mkdtempSync(path.join(tmpdir(), 'syncpi-ssh-flags-'));
after(() => rmSync(home, { recursive: true, force: true }));
const ctx = { home, localUser: 'me', localHost: 'laptop' };

// The user's own ~/.ssh/config, read when no -F is given.
mkdirSync(path.join(home, '.ssh'));
writeFileSync(
  path.join(home, '.ssh', 'config'),
  [
    'Host grandma',
    '  HostName 10.0.0.5',
    '  Port 2222',
    '  User alice',
    '  IdentityFile ~/.ssh/grandma_key',
    '  UserKnownHostsFile ~/.ssh/known_hosts.family',
    'Host behind',
    '  HostName 192.168.7.2',
    '  ProxyJump admin@bastion:2200',
    '',
  ].join('\n'),
);
const other = path.join(home, 'other_config');
writeFileSync(other, 'Host grandma\n  HostName 10.9.9.9\n  Port 2022\n');

const resolveFlags = (dest: string, flags: SshCliOptions, defaultUser = 'pi'): SshResolved => resolveConnection(sshOptions(dest, { connectTimeout: '20', ...flags }, defaultUser), ctx);

const CASES: Array<{ name: string; dest: string; flags: SshCliOptions; defaultUser?: string; expect: Partial<SshResolved> }> = [
  {
    name: 'an alias of ~/.ssh/config gives address, port, user, key and known_hosts',
    dest: 'grandma',
    flags: {},
    expect: { host: '10.0.0.5', port: 2222, user: 'alice', identities: [{ file: path.join(home, '.ssh/grandma_key'), from: 'config' }], knownHostsFile: path.join(home, '.ssh/known_hosts.family'), proxyJump: [] },
  },
  { name: 'the user in the destination beats the config\'s User', dest: 'bob@grandma', flags: {}, expect: { user: 'bob', host: '10.0.0.5' } },
  { name: '-p beats the config\'s Port', dest: 'grandma', flags: { port: '2200' }, expect: { port: 2200 } },
  {
    name: '-i comes before the config\'s IdentityFile; --known-hosts beats UserKnownHostsFile',
    dest: 'grandma',
    flags: { identity: ['/keys/a', '/keys/b'], knownHosts: '/tmp/kh' },
    expect: {
      identities: [
        { file: '/keys/a', from: 'flag' },
        { file: '/keys/b', from: 'flag' },
        { file: path.join(home, '.ssh/grandma_key'), from: 'config' },
      ],
      knownHostsFile: '/tmp/kh',
    },
  },
  { name: 'a host the config does not name: the name as typed, port 22, the command\'s default user', dest: 'pi.local', flags: {}, defaultUser: 'admin', expect: { host: 'pi.local', port: 22, user: 'admin', identities: [], proxyJump: [] } },
  { name: '-F FILE reads that file instead of ~/.ssh/config', dest: 'grandma', flags: { sshConfig: other }, expect: { host: '10.9.9.9', port: 2022, user: 'pi', identities: [] } },
  { name: '-F none reads no config at all', dest: 'grandma', flags: { sshConfig: 'none' }, expect: { host: 'grandma', port: 22, user: 'pi', identities: [] } },
  { name: 'ProxyJump of the config is kept for the connection', dest: 'behind', flags: {}, expect: { host: '192.168.7.2', proxyJump: [{ user: 'admin', host: 'bastion', port: 2200 }] } },
  { name: 'IPv6 in brackets is the address, without them', dest: 'pi@[fe80::1]', flags: { sshConfig: 'none' }, expect: { host: 'fe80::1', user: 'pi' } },
];

for (const c of CASES) {
  test(`ssh flags: ${c.name}`, () => {
    const r = resolveFlags(c.dest, c.flags, c.defaultUser);
    for (const [k, v] of Object.entries(c.expect)) assert.deepEqual(r[k as keyof SshResolved], v, k);
  });
}

test('ssh flags: the connection policy carries every flag, with the commander default timeout', () => {
  assert.deepEqual(connectPolicy({ identity: ['/k'], knownHosts: '/kh', sshConfig: 'none', acceptNewHostKey: true, hostKeyFingerprint: 'SHA256:x', connectTimeout: '7' }), {
    sshConfigFile: null,
    identities: ['/k'],
    knownHostsFile: '/kh',
    acceptNewHostKey: true,
    hostKeyFingerprint: 'SHA256:x',
    connectTimeoutMs: 7000,
  });
  const unset = connectPolicy({});
  assert.equal(unset.sshConfigFile, undefined, 'unset -F: ~/.ssh/config when present');
  assert.equal(unset.acceptNewHostKey, false);
  assert.equal(unset.connectTimeoutMs, 20_000);
});

test('ssh flags: bad values are refused with the flag named, before any connection', () => {
  const refuses = (f: () => unknown, re: RegExp): void => assert.throws(f, (e: unknown) => e instanceof UserError && re.test(e.message));
  refuses(() => connectPolicy({ connectTimeout: '0' }), /^--connect-timeout "0": expected a whole number from 1 to 3600$/);
  refuses(() => connectPolicy({ connectTimeout: '5s' }), /^--connect-timeout "5s"/);
  refuses(() => sshOptions('pi.local', { port: '70000' }, 'pi'), /^--port "70000": expected a whole number from 1 to 65535$/);
  refuses(() => sshOptions('bad user@pi.local', {}, 'pi'), /^destination "bad user@pi.local" is not \[USER@\]HOST/);
  refuses(() => parseDestination('pi@'), /is not \[USER@\]HOST/);
  refuses(() => parseDestination('host/path'), /is not \[USER@\]HOST/);
  refuses(() => resolveFlags('grandma', { sshConfig: path.join(home, 'missing') }), /^--ssh-config .*missing: no such file/);
});
