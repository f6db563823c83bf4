/**
 * The known_hosts policy as a table: a known_hosts text, the name a host goes by and the key it
 * presents in; known, changed, revoked, new (with or without a flag to trust it) out. The keys,
 * fingerprints and hashed names were made by ssh-keygen, so the policy is judged against OpenSSH's
 * own output, not against itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fingerprintOf, hostKeyAlgorithms, judgeHostKey, knownHostsLine, knownHostsName, knownKeyTypes, parseKnownHosts } from '../../src/targets/known-hosts.js';
import { UserError } from '../../src/util/errors.js';

// ssh-keygen -t ed25519, twice; fingerprints as `ssh-keygen -lf` prints them.
const K1 = 'AAAAC3NzaC1lZDI1NTE5AAAAIErNs1yiQ0zUz3FahepqzbBLPdkK1XaaKu5LREmukkqx';
const K1_FP = 'SHA256:hgcEgJGRfiAa/CkFYZiinDP5b8LQqzDaj5VMnj8UIeU';
const K2 = 'AAAAC3NzaC1lZDI1NTE5AAAAIN+lN7pc1ZGio23Ac+zabSkzg2NE6LLFyJjp2vRkCbnE';
const K2_FP = 'SHA256:bBUBBUN1GmRUwkH/cNkgmRs0Fs00ISqsGe9+4uH/1+A';
// `ssh-keygen -H` of "pi.lan" and "[pi.lan]:2222".
const HASHED_22 = '|1|6XoqxI9FqzxQL/94QCVwD2BzUjc=|EhuqeX76kSVD6tso+yRNqzVMXAM=';
const HASHED_2222 = '|1|xYu/eAigHQYGSh/PfvVBg7ZuWg8=|qzx7/tWdLqqs1HTdhvN5WbPG/Nw=';

const FILE = '/home/me/.ssh/known_hosts';

type Expect = { ok: true; record: boolean } | { ok: false; error: RegExp };

const CASES: Array<{ name: string; text: string; host: string; port?: number; key: string; acceptNew?: boolean; fingerprint?: string; expect: Expect }> = [
  { name: 'a recorded key is known and not recorded again', text: `pi.lan ssh-ed25519 ${K1}\n`, host: 'pi.lan', key: K1, expect: { ok: true, record: false } },
  { name: 'names match case-insensitively, as ssh(1) lowercases them', text: `PI.LAN ssh-ed25519 ${K1}\n`, host: 'pi.lan', key: K1, expect: { ok: true, record: false } },
  { name: 'a hashed name is matched', text: `${HASHED_22} ssh-ed25519 ${K1}\n`, host: 'pi.lan', key: K1, expect: { ok: true, record: false } },
  { name: 'a hashed [name]:port is matched on that port', text: `${HASHED_2222} ssh-ed25519 ${K1}\n`, host: 'pi.lan', port: 2222, key: K1, expect: { ok: true, record: false } },
  {
    name: 'a hashed [name]:port is another host on port 22',
    text: `${HASHED_2222} ssh-ed25519 ${K1}\n`,
    host: 'pi.lan',
    key: K1,
    expect: { ok: false, error: new RegExp(`not known \\(ssh-ed25519 ${K1_FP.replace(/[+/]/g, '\\$&')}, not in ${FILE}\\)`) },
  },
  { name: 'one of several comma-separated names matches', text: `other,pi.lan,10.0.0.5 ssh-ed25519 ${K1}\n`, host: '10.0.0.5', key: K1, expect: { ok: true, record: false } },
  { name: 'a wildcard pattern matches', text: `10.0.0.* ssh-ed25519 ${K1}\n`, host: '10.0.0.5', key: K1, expect: { ok: true, record: false } },
  { name: 'a negated pattern excludes a name the wildcard would match', text: `*.lan,!pi.lan ssh-ed25519 ${K1}\n`, host: 'pi.lan', key: K1, expect: { ok: false, error: /is not known/ } },
  { name: 'comments and blank lines are skipped', text: `# pi.lan ssh-ed25519 ${K2}\n\npi.lan ssh-ed25519 ${K1}\n`, host: 'pi.lan', key: K1, expect: { ok: true, record: false } },
  {
    name: 'another key for the name is a CHANGED key, refused with the lines and how to remove them',
    text: `# header\npi.lan ssh-ed25519 ${K2}\n`,
    host: 'pi.lan',
    key: K1,
    acceptNew: true,
    expect: { ok: false, error: /host key of pi has CHANGED \(now ssh-ed25519 SHA256:hgcEgJGRfiAa\/CkFYZiinDP5b8LQqzDaj5VMnj8UIeU; \/home\/me\/\.ssh\/known_hosts line 2 holds another\).*ssh-keygen -R pi\.lan -f \/home\/me\/\.ssh\/known_hosts/ },
  },
  {
    name: 'a changed key is refused even with a matching --host-key-fingerprint',
    text: `pi.lan ssh-ed25519 ${K2}\n`,
    host: 'pi.lan',
    key: K1,
    fingerprint: K1_FP,
    expect: { ok: false, error: /CHANGED/ },
  },
  { name: 'a key marked @revoked is refused, even when also listed plainly', text: `pi.lan ssh-ed25519 ${K1}\n@revoked * ssh-ed25519 ${K1}\n`, host: 'pi.lan', key: K1, expect: { ok: false, error: /is marked @revoked in \/home\/me\/\.ssh\/known_hosts/ } },
  { name: 'a @revoked entry for another key does not refuse this one', text: `pi.lan ssh-ed25519 ${K1}\n@revoked * ssh-ed25519 ${K2}\n`, host: 'pi.lan', key: K1, expect: { ok: true, record: false } },
  { name: 'a @cert-authority line does not make a plain key known', text: `@cert-authority * ssh-ed25519 ${K1}\n`, host: 'pi.lan', key: K1, expect: { ok: false, error: /is not known/ } },
  { name: 'a new host without a flag is refused, naming the fingerprint and both ways to trust it', text: '', host: 'pi.lan', key: K1, expect: { ok: false, error: /--host-key-fingerprint SHA256:hgcEgJGRfiAa\/CkFYZiinDP5b8LQqzDaj5VMnj8UIeU, or --accept-new-host-key/ } },
  { name: 'a new host is trusted and recorded with --accept-new-host-key', text: `other ssh-ed25519 ${K2}\n`, host: 'pi.lan', key: K1, acceptNew: true, expect: { ok: true, record: true } },
  { name: 'a new host whose key has the given fingerprint is trusted and recorded', text: '', host: 'pi.lan', key: K1, fingerprint: K1_FP, expect: { ok: true, record: true } },
  { name: 'the fingerprint may be given without SHA256: and with base64 padding', text: '', host: 'pi.lan', key: K1, fingerprint: `${K1_FP.slice(7)}=`, expect: { ok: true, record: true } },
  { name: 'a fingerprint that does not match is refused, even with --accept-new-host-key', text: '', host: 'pi.lan', key: K1, fingerprint: K2_FP, acceptNew: true, expect: { ok: false, error: /is SHA256:hgcEgJGRfiAa\/CkFYZiinDP5b8LQqzDaj5VMnj8UIeU, not the given --host-key-fingerprint SHA256:bBUB/ } },
];

for (const c of CASES) {
  test(`known_hosts: ${c.name}`, () => {
    const name = knownHostsName(c.host, c.port ?? 22);
    const v = judgeHostKey(parseKnownHosts(c.text), name, Buffer.from(c.key, 'base64'), { file: FILE, label: 'pi', acceptNew: c.acceptNew, fingerprint: c.fingerprint });
    if (c.expect.ok) {
      assert.deepEqual(v, { ok: true, record: c.expect.record });
    } else {
      assert.equal(v.ok, false);
      if (v.ok) return;
      assert.ok(v.error instanceof UserError);
      assert.match(v.error.message, c.expect.error);
    }
  });
}

test('known_hosts: fingerprints are the ones ssh-keygen -l prints', () => {
  assert.equal(fingerprintOf(Buffer.from(K1, 'base64')), K1_FP);
  assert.equal(fingerprintOf(Buffer.from(K2, 'base64')), K2_FP);
});

test('known_hosts: the name of a host is host on port 22 and [host]:port otherwise', () => {
  assert.equal(knownHostsName('pi.lan', 22), 'pi.lan');
  assert.equal(knownHostsName('pi.lan', 2222), '[pi.lan]:2222');
  assert.equal(knownHostsName('fe80::1', 2222), '[fe80::1]:2222');
});

test('known_hosts: a recorded line makes the key known on the next connection, and only that key', () => {
  const line = knownHostsLine('[pi.lan]:2222', Buffer.from(K1, 'base64'));
  assert.equal(line, `[pi.lan]:2222 ssh-ed25519 ${K1}\n`);
  const entries = parseKnownHosts(`other ssh-ed25519 ${K2}\n${line}`);
  assert.deepEqual(judgeHostKey(entries, '[pi.lan]:2222', Buffer.from(K1, 'base64'), { file: FILE, label: 'pi' }), { ok: true, record: false });
  assert.equal(judgeHostKey(entries, '[pi.lan]:2222', Buffer.from(K2, 'base64'), { file: FILE, label: 'pi' }).ok, false);
});

test('known_hosts: only the key types recorded for the host are offered; rsa brings its SHA-2 signatures', () => {
  const entries = parseKnownHosts(`pi.lan ssh-rsa AAAA\npi.lan ssh-ed25519 ${K1}\n@revoked pi.lan ecdsa-sha2-nistp256 AAAA\nother ecdsa-sha2-nistp256 AAAA\npi.lan ssh-ed25519 ${K2}\n`);
  const types = knownKeyTypes(entries, 'pi.lan');
  assert.deepEqual(types, ['ssh-rsa', 'ssh-ed25519']);
  assert.deepEqual(hostKeyAlgorithms(types), ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa', 'ssh-ed25519']);
  assert.deepEqual(knownKeyTypes(entries, 'new.lan'), []);
});
