/**
 * The real appliance (image/appliance.yaml) provisioned through the real CLI onto real hosts
 * (systemd-nspawn, sshd, packages from a local repository):
 *  - host A: the drive is configured but absent — the apply succeeds, Syncthing does not run and
 *    says why, and every later apply retries it without reporting changes;
 *  - host B: no drive — Syncthing runs and answers its REST API through the SSH connection.
 * Both: --check first changes nothing, the apply converges, the second apply changes nothing,
 * `syncpi verify` passes what a container can pass, and SSH still lets the config's user in
 * (key only, nobody else) after the sshd drop-in, the firewall and NetworkManager.
 * Last, `share add --apply` puts a pasted device on B's running Syncthing in one step, and
 * `share HOST --config` shows B's ID and who each folder is shared with.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startHosts, stopAll, writeKnownHosts, type TestHost } from '../helpers/hosts.js';
import { ABSENT_LABEL, jsonResult, syncpi, testAppliance, writeYaml, type CliResult } from '../helpers/appliance-config.js';
import { SshConnection } from '../../src/targets/ssh-connection.js';
import { generateHome } from '../helpers/laptop-syncthing.js';
import type { HostReport } from '../../src/provision/host.js';

let hosts: TestHost[] = [];
let dir: string;
let kh: string;
const cfg: { a: string; b: string } = { a: '', b: '' };
const first: { a?: HostReport; b?: HostReport } = {};

const A = (): TestHost => hosts[0]!;
const B = (): TestHost => hosts[1]!;

function provision(h: TestHost, config: string, extra: string[] = []): Promise<CliResult> {
  return syncpi(['provision', '--json', '-i', h.keyPath, '--known-hosts', kh, ...extra, `${h.user}@${h.ip}`, config]);
}

async function sh(h: TestHost, script: string): Promise<string> {
  const r = await h.exec(['sh', '-c', script]);
  assert.equal(r.exitCode, 0, `${h.name}: ${script}: ${r.stderr}`);
  return r.stdout.trim();
}

/** What a --check must not touch: hashes of managed files, package states, the firewall. */
async function snapshot(h: TestHost): Promise<string> {
  return sh(
    h,
    "set -e; cat /etc/hostname; ls /etc/ssh/sshd_config.d /etc/systemd/system; p=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n'); printf '%s\\n' \"$p\" | sort | sha256sum; " +
      'nft list ruleset | sha256sum; getent passwd syncthing || echo no-syncthing-user; id -nG pi; systemctl is-enabled syncthing.service 2>&1 || true',
  );
}

/** The appliance's own REST key: made on the host by syncthing-prepare, readable by root only. */
async function apiKeyOn(h: TestHost): Promise<string> {
  assert.equal(await sh(h, 'stat -c "%a %U" /var/lib/syncpi/syncthing-api-key'), '600 root');
  return sh(h, 'cat /var/lib/syncpi/syncthing-api-key');
}

before(async () => {
  const t0 = Date.now();
  hosts = await startHosts(2, { prefix: 'app' });
  dir = await mkdtemp(path.join(tmpdir(), 'syncpi-appliance-'));
  kh = await writeKnownHosts(path.join(dir, 'known_hosts'), hosts);
  cfg.a = await writeYaml(path.join(dir, 'drive-absent.yaml'), testAppliance({ pubKey: `${A().keyPath}.pub`, drive: 'absent' }));
  cfg.b = await writeYaml(path.join(dir, 'no-drive.yaml'), testAppliance({ pubKey: `${B().keyPath}.pub`, drive: 'none' }));
  process.stderr.write(`# booted 2 hosts in ${Date.now() - t0} ms\n`);
});

after(async () => {
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('syncpi provision with the real appliance', () => {
  test('--check shows diffs, packages and restarts, and changes nothing', async () => {
    const before = await snapshot(A());
    const r = await provision(A(), cfg.a, ['--check']);
    assert.equal(r.exitCode, 3, `--check exits 3 when something would change: ${r.stderr}`);
    const rep = jsonResult<HostReport>(r.stdout);
    assert.equal(rep.mode, 'check');
    assert.equal(rep.status, 'changed');
    for (const p of ['syncthing', 'nftables', 'rsync', 'unattended-upgrades']) {
      assert.ok(rep.changes.some((c) => c.kind === 'package' && c.target === p && c.action === 'install'), `would install ${p}`);
    }
    assert.match(rep.diffs['/etc/hostname'] ?? '', /^\+syncpi$/m, 'hostname diff');
    assert.match(rep.diffs['/etc/ssh/sshd_config.d/10-syncpi.conf'] ?? '', /^\+AllowUsers pi$/m, 'sshd drop-in diff');
    assert.equal(rep.diffs['/etc/syncpi/syncthing/config.xml'], '(secret content: diff hidden)\n');
    assert.doesNotMatch(r.stdout + r.stderr, /<apikey>[A-Za-z0-9]{32}<\/apikey>/, 'no API key travels with the plan');
    assert.ok(rep.handlers.some((h) => h.unit === 'ssh.service' && h.action === 'reload'), 'sshd reload announced');
    // Announced once, as a restart: not also as a start of the newly enabled unit.
    assert.equal(rep.handlers.filter((h) => h.unit === 'syncthing.service').length, 1, JSON.stringify(rep.handlers));
    assert.equal(await snapshot(A()), before, 'nothing changed on the host');
  });

  test('apply converges both hosts (drive absent: Syncthing held back, with the reason)', async () => {
    const t0 = Date.now();
    const [ra, rb] = await Promise.all([provision(A(), cfg.a), provision(B(), cfg.b)]);
    process.stderr.write(`# first apply of the appliance, 2 hosts at once: ${Date.now() - t0} ms (A ${ra.ms} ms, B ${rb.ms} ms)\n`);
    assert.equal(ra.exitCode, 0, `A: ${ra.stdout.slice(-3000)}\n${ra.stderr}`);
    assert.equal(rb.exitCode, 0, `B: ${rb.stdout.slice(-3000)}\n${rb.stderr}`);
    first.a = jsonResult<HostReport>(ra.stdout);
    first.b = jsonResult<HostReport>(rb.stdout);
    for (const [h, rep] of [[A(), first.a], [B(), first.b]] as const) {
      assert.equal(rep.status, 'changed');
      assert.equal(rep.roundTrips, 1, 'one upload and one run');
      // packages from the local repository
      const pk = await sh(h, "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' syncthing nftables rsync smartmontools unattended-upgrades network-manager locales");
      for (const l of pk.split('\n')) assert.match(l, /^\S+ ii\s*$/, `${h.name}: ${l}`);
      // users
      assert.match(await sh(h, 'getent passwd syncthing'), /^syncthing:x:\d+:\d+::\/var\/lib\/syncthing:\/usr\/sbin\/nologin$/);
      assert.ok((await sh(h, 'id -nG pi')).split(' ').includes('systemd-journal'));
      // files and what they feed
      assert.equal(await sh(h, 'hostname'), 'syncpi', 'hostname applied');
      assert.equal(await sh(h, 'readlink /etc/localtime'), '/usr/share/zoneinfo/Europe/Berlin');
      assert.equal(await sh(h, 'stat -c "%a %U %G" /etc/syncpi/syncthing/config.xml'), '640 root syncthing');
      const sshd = await sh(h, 'sshd -T');
      assert.match(sshd, /^passwordauthentication no$/m);
      assert.match(sshd, /^allowusers pi$/m);
      assert.match(sshd, /^authenticationmethods publickey$/m);
      assert.match(await sh(h, 'cat /etc/sysctl.d/90-syncpi.conf'), /fs\.inotify\.max_user_watches\s*=\s*524288/);
      // units
      assert.equal(await sh(h, 'systemctl is-enabled syncthing.service nftables.service NetworkManager.service | sort -u'), 'enabled');
      assert.equal(await sh(h, 'systemctl is-active nftables.service ssh.service NetworkManager.service | sort -u'), 'active');
      // firewall loaded: default drop, SSH open
      const rules = await sh(h, 'nft list table inet syncpi');
      assert.match(rules, /hook input priority filter; policy drop;/);
      assert.match(rules, /tcp dport 22 accept/);
      assert.ok(rep.handlers.some((x) => x.unit === 'ssh.service' && x.action === 'reload'), `${h.name}: sshd reloaded`);
      // A container cannot set a kernel sysctl: said, not fatal.
      assert.ok(rep.warnings.some((w) => w.includes('fs.inotify.max_user_watches')), JSON.stringify(rep.warnings));
    }

    // A: configured drive, absent. The mount is in fstab; Syncthing is enabled but not running,
    // and the apply says why instead of failing.
    assert.match(await sh(A(), 'cat /etc/fstab'), new RegExp(`^LABEL=${ABSENT_LABEL} /srv/sync ext4 nofail,x-systemd\\.automount`, 'm'));
    assert.notEqual((await A().exec(['systemctl', 'is-active', 'syncthing.service'])).stdout.trim(), 'active');
    assert.equal((await A().exec(['mountpoint', '-q', '/srv/sync'])).exitCode === 0, false);
    const why = first.a.warnings.join('\n');
    assert.match(why, /syncthing\.service did not restart/);
    assert.match(why, /\/srv\/sync is not mounted; not starting Syncthing/);
    assert.equal(first.a.failure, undefined);

    // B: no drive — Syncthing runs, and its REST API answers through the SSH connection.
    assert.equal(await sh(B(), 'systemctl is-active syncthing.service'), 'active');
    const apiKey = await apiKeyOn(B());
    assert.match(apiKey, /^[A-Za-z0-9]{32}$/);
    const t = await SshConnection.connect({ host: B().ip, user: 'pi', identities: [B().keyPath], knownHostsFile: kh });
    try {
      let st: { status: number; body: string } = { status: 0, body: '' };
      // Syncthing opens its GUI listener a moment after systemd reports it started.
      for (let i = 0; i < 40; i++) {
        st = await t.httpGet(8384, '/rest/system/status', { 'X-API-Key': apiKey }, 5_000, true).catch((e: Error) => ({ status: 0, body: e.message }));
        if (st.status === 200) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(st.status, 200, st.body);
      assert.match((JSON.parse(st.body) as { myID: string }).myID, /^[A-Z0-9]{7}(-[A-Z0-9]{7}){7}$/);
      const unauth = await t.httpGet(8384, '/rest/system/status', {}, 5_000, true);
      assert.equal(unauth.status, 401, 'the API wants its key (or the panel password)');
      const folders = JSON.parse((await t.httpGet(8384, '/rest/config/folders', { 'X-API-Key': apiKey }, 5_000, true)).body) as Array<{ id: string }>;
      assert.deepEqual(folders.map((f) => f.id).sort(), ['camera', 'documents']);
    } finally {
      t.close();
    }
  });

  test('a second apply reports zero changes (A retries Syncthing and still says why)', async () => {
    const [ra, rb] = await Promise.all([provision(A(), cfg.a), provision(B(), cfg.b)]);
    process.stderr.write(`# second apply (no-op): A ${ra.ms} ms, B ${rb.ms} ms\n`);
    assert.equal(ra.exitCode, 0, ra.stdout.slice(-2000));
    assert.equal(rb.exitCode, 0, rb.stdout.slice(-2000));
    const a = jsonResult<HostReport>(ra.stdout);
    const b = jsonResult<HostReport>(rb.stdout);
    for (const rep of [a, b]) {
      assert.equal(rep.status, 'unchanged', JSON.stringify({ changes: rep.changes, handlers: rep.handlers }));
      assert.deepEqual(rep.changes, []);
      assert.deepEqual(rep.handlers, []);
    }
    assert.match(a.warnings.join('\n'), /\/srv\/sync is not mounted/);
    assert.equal(await sh(B(), 'systemctl is-active syncthing.service'), 'active');
  });

  test('the human output of a no-op says so; a drive-absent host shows the warning', async () => {
    const r = await syncpi(['provision', '-i', A().keyPath, '--known-hosts', kh, `pi@${A().ip}`, cfg.a]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /no changes \(already converged\)/);
    assert.match(r.stdout, /warning: syncthing\.service did not restart/);
  });

  test('syncpi verify over SSH: what a container can pass passes', async () => {
    const failedOf = async (h: TestHost, config: string): Promise<string[]> => {
      const r = await syncpi(['verify', '--json', '-i', h.keyPath, '--known-hosts', kh, `pi@${h.ip}`, config]);
      const res = jsonResult<{ checks: Array<{ description: string; status: string }> }>(r.stdout);
      assert.ok(res.checks.length > 40, 'the appliance has its checks');
      return res.checks.filter((c) => c.status === 'fail').map((c) => c.description).sort();
    };
    // The kernel's inotify limit belongs to the machine running the containers.
    const container = ['inotify watches raised for large folders'];
    assert.deepEqual(await failedOf(B(), cfg.b), container);
    assert.deepEqual(
      await failedOf(A(), cfg.a),
      [
        ...container,
        'Syncthing is running',
        'drive is mounted at /srv/sync',
        'folder camera has its marker on the drive',
        'folder documents has its marker on the drive',
        'panel asks for a password over TLS',
        'panel redirects plain HTTP to HTTPS',
      ].sort(),
    );
  });

  test('SSH after hardening: the config\'s user gets in with its key, nobody else does', async () => {
    for (const h of hosts) {
      // Another account with the very same key: AllowUsers keeps it out.
      await sh(h, 'id eve >/dev/null 2>&1 || { useradd -m eve && install -d -m700 -o eve -g eve /home/eve/.ssh && install -m600 -o eve -g eve /home/pi/.ssh/authorized_keys /home/eve/.ssh/; }');
      await assert.rejects(SshConnection.connect({ host: h.ip, user: 'eve', identities: [h.keyPath], knownHostsFile: kh }), /refused every offered key/);
      const t = await SshConnection.connect({ host: h.ip, user: 'pi', identities: [h.keyPath], knownHostsFile: kh });
      const r = await t.exec('id -un; sudo -n true && echo sudo-ok');
      t.close();
      assert.equal(r.stdout.trim(), 'pi\nsudo-ok');
    }
  });

  test('NetworkManager, now running, leaves the link it did not configure alone', async () => {
    for (const h of hosts) {
      // The address came from elsewhere (here: the test's veth setup; on a Pi: dhcpcd or networkd).
      assert.match(await sh(h, 'nmcli -t -f DEVICE,STATE device'), /^eth0:connected \(externally\)$/m);
      await sh(h, 'systemctl restart NetworkManager.service && sleep 2');
      assert.match(await sh(h, 'ip -4 -o addr show dev eth0'), new RegExp(`inet ${h.ip.replace(/\./g, '\\.')}/30`));
      const t = await SshConnection.connect({ host: h.ip, user: 'pi', identities: [h.keyPath], knownHostsFile: kh, connectTimeoutMs: 10_000 });
      assert.equal((await t.exec('true')).code, 0);
      t.close();
    }
  });

  test('share add --apply: a pasted device reaches the running Syncthing in one step; share shows who has which folder', async () => {
    const friend = await generateHome(path.join(dir, 'friend-home'));
    const ssh = ['-i', B().keyPath, '--known-hosts', kh];
    const r = await syncpi(['share', 'add', cfg.b, '--device', friend.toLowerCase(), '--name', 'friend', '--folder', 'documents', '--apply', `pi@${B().ip}`, ...ssh]);
    assert.equal(r.exitCode, 0, `${r.stdout.slice(-3000)}\n${r.stderr}`);
    assert.match(r.stdout, /friend added to folder documents as a device/);
    assert.match(r.stdout, new RegExp(`${B().ip.replace(/\./g, '\\.')}: \\d+ change\\(s\\) made`));
    const apiKey = await apiKeyOn(B());
    const t = await SshConnection.connect({ host: B().ip, user: 'pi', identities: [B().keyPath], knownHostsFile: kh });
    try {
      let folders: Array<{ id: string; devices: Array<{ deviceID: string }> }> = [];
      // the daemon restarted with the new config: its API comes back a moment later
      for (let i = 0; i < 80; i++) {
        const res = await t.httpGet(8384, '/rest/config/folders', { 'X-API-Key': apiKey }, 5_000, true).catch(() => ({ status: 0, body: '' }));
        if (res.status === 200) {
          folders = JSON.parse(res.body) as typeof folders;
          if (folders.find((f) => f.id === 'documents')?.devices.some((d) => d.deviceID === friend)) break;
        }
        await new Promise((res2) => setTimeout(res2, 250));
      }
      assert.ok(folders.find((f) => f.id === 'documents')?.devices.some((d) => d.deviceID === friend), JSON.stringify(folders));
      assert.ok(!folders.find((f) => f.id === 'camera')?.devices.some((d) => d.deviceID === friend), 'only the folder asked for');
      const devices = JSON.parse((await t.httpGet(8384, '/rest/config/devices', { 'X-API-Key': apiKey }, 5_000, true)).body) as Array<{ deviceID: string; name: string }>;
      assert.equal(devices.find((d) => d.deviceID === friend)?.name, 'friend');
    } finally {
      t.close();
    }
    const again = await syncpi(['share', 'add', cfg.b, '--device', friend, '--name', 'friend', '--folder', 'documents', '--apply', `pi@${B().ip}`, ...ssh]);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.match(again.stdout, /nothing changed/);
    assert.match(again.stdout, /no changes \(already converged\)/);

    const shown = await syncpi(['share', `pi@${B().ip}`, '--config', cfg.b, '--no-qr', ...ssh]);
    assert.equal(shown.exitCode, 0, shown.stderr);
    assert.match(shown.stdout, /^[A-Z2-7]{7}(-[A-Z2-7]{7}){7}$/m, 'the appliance ID');
    assert.match(shown.stdout, /documents "Documents": send-receive\n +laptop \(JB2RL7S\) +send-receive\n +friend \([A-Z2-7]{7}\) +send-receive/);
    assert.match(shown.stdout, /camera "Phone camera": receive-only/);
  });
});
