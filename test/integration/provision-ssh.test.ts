/**
 * Provision over real SSH to real systemd-nspawn hosts: host-key policy, sudo, one-run applies,
 * idempotence, check mode, a failing step, and connection cuts at many points of an apply.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startHosts, stopAll, writeKnownHosts, type TestHost } from '../helpers/hosts.js';
import { demoFileContent, demoPlan, DEMO_DIR } from '../helpers/hosts-plan.js';
import { SshConnection } from '../../src/targets/ssh-connection.js';
import { UserError } from '../../src/util/errors.js';
import { applyToHost, type HostSpec } from '../../src/provision/host.js';
import type { ConnectPolicy } from '../../src/targets/ssh-connection.js';
import { applyBundle, archiveOf } from '../../src/targets/apply.js';
import { SshTarget } from '../../src/targets/ssh.js';

let hosts: TestHost[] = [];
let dir: string;
let kh: string;

const spec = (h: TestHost): HostSpec => ({ name: h.name, address: h.ip, user: h.user, port: h.port });
const policy = (h: TestHost, extra: Partial<ConnectPolicy> = {}): ConnectPolicy => ({ identities: [h.keyPath], knownHostsFile: kh, ...extra });

before(async () => {
  // pi1: general, pi2: broken dpkg, pi3: host-key policy, pi4: interruptions
  hosts = await startHosts(4, { broken: [1] });
  dir = await mkdtemp(path.join(tmpdir(), 'syncpi-prov-'));
  kh = path.join(dir, 'known_hosts');
  await writeKnownHosts(kh, [hosts[0]!, hosts[1]!, hosts[3]!]);
});

after(async () => {
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('host keys', () => {
  test('an unknown host is refused without a flag, with the fingerprint in the message', async () => {
    const h = hosts[2]!;
    const file = path.join(dir, 'kh-new');
    await assert.rejects(
      SshConnection.connect({ host: h.ip, user: 'pi', identities: [h.keyPath], knownHostsFile: file }),
      (e: unknown) => e instanceof UserError && e.message.includes('not known') && e.message.includes(h.fingerprint),
    );
    assert.equal(existsSync(file), false, 'nothing recorded');
  });

  test('a wrong --host-key-fingerprint is refused; the right one connects and is recorded', async () => {
    const h = hosts[2]!;
    const file = path.join(dir, 'kh-fp');
    await assert.rejects(
      SshConnection.connect({ host: h.ip, user: 'pi', identities: [h.keyPath], knownHostsFile: file, hostKeyFingerprint: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }),
      (e: unknown) => e instanceof UserError && /not the given --host-key-fingerprint/.test(e.message),
    );
    const t = await SshConnection.connect({ host: h.ip, user: 'pi', identities: [h.keyPath], knownHostsFile: file, hostKeyFingerprint: h.fingerprint });
    const r = await t.exec('id -un');
    t.close();
    assert.equal(r.stdout.trim(), 'pi');
    assert.equal((await readFile(file, 'utf8')).trim(), h.knownHostsLine);
  });

  test('--accept-new-host-key records the key; a changed key is then refused (exit class 2)', async () => {
    const h = hosts[2]!;
    const file = path.join(dir, 'kh-accept');
    const t = await SshConnection.connect({ host: h.ip, user: 'pi', identities: [h.keyPath], knownHostsFile: file, acceptNewHostKey: true });
    t.close();
    assert.equal((await readFile(file, 'utf8')).trim(), h.knownHostsLine);
    const old = h.fingerprint;
    await h.rotateHostKey();
    assert.notEqual(h.fingerprint, old);
    // Even with --accept-new-host-key: a changed key is never "new".
    await assert.rejects(
      SshConnection.connect({ host: h.ip, user: 'pi', identities: [h.keyPath], knownHostsFile: file, acceptNewHostKey: true }),
      (e: unknown) => e instanceof UserError && e.exitCode === 2 && /CHANGED/.test(e.message) && e.message.includes(h.fingerprint),
    );
    assert.equal((await readFile(file, 'utf8')).trim().split('\n').length, 1, 'known_hosts untouched');
  });

  test('hashed known_hosts entries are honoured', async () => {
    const h = hosts[0]!;
    const file = path.join(dir, 'kh-hashed');
    await writeFile(file, h.knownHostsLine + '\n');
    const { execa } = await import('execa');
    await execa('ssh-keygen', ['-H', '-f', file]);
    assert.match(await readFile(file, 'utf8'), /^\|1\|/);
    const t = await SshConnection.connect({ host: h.ip, user: 'pi', identities: [h.keyPath], knownHostsFile: file });
    t.close();
  });
});

describe('sudo', () => {
  test('a user whose sudo wants a password gets a clear error, not a hang', async () => {
    const h = hosts[0]!;
    // A second login user with sudo but no NOPASSWD rule.
    const setup = await h.exec([
      'sh',
      '-c',
      'id alice >/dev/null 2>&1 || { useradd -m -G sudo alice && echo alice:secret123 | chpasswd && install -d -m700 -o alice -g alice /home/alice/.ssh && cp /home/pi/.ssh/authorized_keys /home/alice/.ssh/ && chown alice:alice /home/alice/.ssh/authorized_keys; }',
    ]);
    assert.equal(setup.exitCode, 0, setup.stderr);
    const r = await applyToHost({ ...spec(h), user: 'alice' }, await archiveOf(demoPlan({ version: 1 })), { policy: policy(h) });
    assert.equal(r.status, 'failed');
    assert.equal(r.error?.exitCode, 2);
    assert.match(r.error!.message, /needs a password for sudo/);
  });
});

describe('apply', () => {
  test('first apply changes, second reports zero changes, in one SSH run each', async () => {
    const h = hosts[0]!;
    const archive = await archiveOf(demoPlan({ version: 1 }));
    const first = await applyToHost(spec(h), archive, { policy: policy(h) });
    assert.equal(first.status, 'changed', JSON.stringify(first.failure ?? first.error));
    assert.equal(first.roundTrips, 1);
    assert.ok(first.changes.some((c) => c.kind === 'package' && c.target === 'syncthing'));
    assert.ok(first.changes.some((c) => c.kind === 'file' && c.target === `${DEMO_DIR}/f000.conf`));
    const active = await h.exec(['systemctl', 'is-active', 'syncpi-demo.service']);
    assert.equal(active.stdout.trim(), 'active');
    const second = await applyToHost(spec(h), archive, { policy: policy(h) });
    assert.equal(second.status, 'unchanged', JSON.stringify(second.changes));
    assert.deepEqual(second.changes, []);
    assert.deepEqual(second.handlers, []);
    assert.equal(second.roundTrips, 1);
  });

  test('check mode shows a unified diff and changes nothing; the apply restarts the service once', async () => {
    const h = hosts[0]!;
    const v2 = await archiveOf(demoPlan({ version: 2 }));
    const before = await readFile(path.join(h.root, DEMO_DIR, 'f000.conf'), 'utf8');
    const pidBefore = (await h.exec(['systemctl', 'show', '-p', 'MainPID', '--value', 'syncpi-demo.service'])).stdout.trim();
    const chk = await applyToHost(spec(h), v2, { policy: policy(h), check: true });
    assert.equal(chk.status, 'changed');
    assert.equal(chk.mode, 'check');
    const d = chk.diffs[`${DEMO_DIR}/f000.conf`];
    assert.ok(d, 'a diff for f000.conf');
    assert.match(d, /^-# demo file 0 version 1/m);
    assert.match(d, /^\+# demo file 0 version 2/m);
    assert.ok(chk.handlers.some((x) => x.name === 'restart-demo' && x.status === 'would-run'));
    assert.equal(await readFile(path.join(h.root, DEMO_DIR, 'f000.conf'), 'utf8'), before, 'check changed nothing');

    const ap = await applyToHost(spec(h), v2, { policy: policy(h) });
    assert.equal(ap.status, 'changed');
    assert.equal(ap.handlers.filter((x) => x.name === 'restart-demo').length, 1);
    const pidAfter = (await h.exec(['systemctl', 'show', '-p', 'MainPID', '--value', 'syncpi-demo.service'])).stdout.trim();
    assert.notEqual(pidAfter, pidBefore, 'restarted');
    assert.equal(await readFile(path.join(h.root, DEMO_DIR, 'f000.conf'), 'utf8'), demoFileContent(0, 2, 64));
  });

  test('a failing step stops the host with the step name, its output and exit code', async () => {
    const h = hosts[1]!;
    const r = await applyToHost(spec(h), await archiveOf(demoPlan({ version: 1 })), { policy: policy(h) });
    assert.equal(r.status, 'failed');
    assert.equal(r.failure?.step, 'packages-install');
    assert.ok(r.failure?.exitCode, `a non-zero exit code: ${r.failure?.exitCode}`);
    assert.ok(r.failure!.output.some((l) => l.includes('simulated dpkg failure')), r.failure!.output.join('\n'));
    // Stopped: no later step ran.
    assert.equal(existsSync(path.join(h.root, DEMO_DIR)), false);
  });
});

describe('interruptions', () => {
  const N = 40;
  const SIZE = 16 * 1024;

  async function assertOldOrNew(h: TestHost, versions: number[]): Promise<{ old: number; new: number }> {
    let o = 0;
    let n = 0;
    for (let i = 0; i < N; i++) {
      const p = path.join(h.root, DEMO_DIR, `f${String(i).padStart(3, '0')}.conf`);
      if (!existsSync(p)) {
        assert.ok(versions.includes(0), `f${i} missing`);
        o++;
        continue;
      }
      const text = await readFile(p, 'utf8');
      const v = versions.find((x) => x > 0 && text === demoFileContent(i, x, SIZE));
      assert.ok(v !== undefined, `f${i} is neither old nor new (${text.length} bytes, starts ${JSON.stringify(text.slice(0, 30))})`);
      if (v === versions[versions.length - 1]) n++;
      else o++;
    }
    return { old: o, new: n };
  }

  test('cutting the connection or killing the converger at increasing delays leaves every file old or new; a rerun converges', async () => {
    const h = hosts[3]!;
    // Baseline: version 1 everywhere (packages installed, so the cuts land in the file writes).
    const base = await applyToHost(spec(h), await archiveOf(demoPlan({ version: 1, files: N, size: SIZE })), { policy: policy(h) });
    assert.equal(base.status, 'changed', JSON.stringify(base.failure ?? base.error));
    let version = 1;
    const delays = [0, 30, 60, 100, 150, 200, 300, 450, 600, 800];
    let interrupted = 0;
    for (const [k, delay] of delays.entries()) {
      const prev = version;
      version++;
      const archive = await archiveOf(demoPlan({ version, files: N, size: SIZE }));
      const t = await SshConnection.connect({ host: h.ip, user: 'pi', identities: [h.keyPath], knownHostsFile: kh });
      const killConverger = k % 2 === 1;
      const run = applyBundle(new SshTarget(t), archive).then(
        (r) => r,
        (e: Error) => e,
      );
      await new Promise((r) => setTimeout(r, delay));
      if (killConverger) {
        // The remote process dies (OOM killer, reboot…) while the connection stays up.
        await h.exec(['sh', '-c', 'for p in $(pgrep -f "apply.sh --live"); do kill -KILL "$p"; done']);
      } else {
        t.destroy();
      }
      const res = await run;
      t.close();
      // A cut or a killed converger fails the apply (ApplyFailed, or a lost connection).
      if (res instanceof Error) interrupted++;
      // Give a converger that lost its connection time to hit the broken pipe.
      await new Promise((r) => setTimeout(r, 300));
      const seen = await assertOldOrNew(h, [prev, version]);
      // Files of the interrupted version may stay as they were: the next apply must converge.
      void seen;
      const re = await applyToHost(spec(h), archive, { policy: policy(h) });
      const leftovers = await h.exec(['sh', '-c', `ls -A ${DEMO_DIR} | grep -c '^\\.syncpi-tmp' || true`]);
      const listing = leftovers.stdout.trim() === '0' ? '' : (await h.exec(['sh', '-c', `ls -la --time-style=full-iso ${DEMO_DIR} | grep syncpi-tmp; ps -ef | grep -v grep | grep -E 'apply|cp |sync' || true`])).stdout;
      assert.equal(leftovers.stdout.trim(), '0', `temp files left in ${DEMO_DIR} after cut #${k} and a rerun:\n${listing}`);
      assert.notEqual(re.status, 'failed', JSON.stringify(re.failure ?? re.error));
      const after = await assertOldOrNew(h, [version]);
      assert.equal(after.new, N, 'rerun converged');
      const again = await applyToHost(spec(h), archive, { policy: policy(h) });
      assert.equal(again.status, 'unchanged');
    }
    assert.ok(interrupted >= delays.length / 2, `only ${interrupted} of ${delays.length} applies were actually interrupted`);
  });
});
