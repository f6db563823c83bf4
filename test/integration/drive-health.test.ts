/**
 * Drive health in `syncpi status --json` against a real host (systemd-nspawn, sshd, Syncthing,
 * smartmontools from the local repository), read by the one probe script over SSH:
 *  - the storage is a small tmpfs mounted at /srv/sync (a container sees no disk): SMART is
 *    reported "unavailable" with why, which counts neither as healthy nor as a failure;
 *  - filled past the threshold, the free-space warning appears and the exit status says so;
 *  - health.alert provisioned: the real unit, sandboxed, reports the free-space problem to its
 *    command once; provisioned without it, its script and units are gone;
 *  - a folder whose marker is deleted is stopped by Syncthing, and status gives its reason.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startHosts, stopAll, writeKnownHosts, type TestHost } from '../helpers/hosts.js';
import { syncpi, testAppliance, writeYaml, type CliResult } from '../helpers/appliance-config.js';
import type { HostStatusReport } from '../../src/fleet/status.js';

let h: TestHost;
let dir: string;
let kh: string;
let inventory: string;

async function sh(script: string): Promise<string> {
  const r = await h.exec(['sh', '-c', script]);
  assert.equal(r.exitCode, 0, `${script}: ${r.stderr}`);
  return r.stdout.trim();
}

async function status(extra: string[] = []): Promise<{ r: CliResult; host: HostStatusReport }> {
  const r = await syncpi(['status', '--json', '-i', h.keyPath, '--known-hosts', kh, ...extra, inventory]);
  try {
    return { r, host: (JSON.parse(r.stdout) as { hosts: HostStatusReport[] }).hosts[0]! };
  } catch {
    throw new Error(`status printed no JSON (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
  }
}

before(async () => {
  [h] = (await startHosts(1, { prefix: 'hl' })) as [TestHost];
  dir = await mkdtemp(path.join(tmpdir(), 'syncpi-health-'));
  kh = await writeKnownHosts(path.join(dir, 'known_hosts'), [h]);
  await sh('mkdir -p /srv/sync && mount -t tmpfs -o size=16m,mode=0755 syncpi-test-store /srv/sync');
  const config = await writeYaml(path.join(dir, 'appliance.yaml'), testAppliance({ pubKey: `${h.keyPath}.pub`, drive: 'none' }));
  inventory = await writeYaml(path.join(dir, 'fleet.yaml'), { appliance: './appliance.yaml', defaults: { user: 'pi' }, hosts: { nas: { address: h.ip } } });
  const p = await syncpi(['provision', '--json', '-i', h.keyPath, '--known-hosts', kh, `pi@${h.ip}`, config]);
  assert.equal(p.exitCode, 0, `${p.stdout.slice(-3000)}\n${p.stderr}`);
  await sh('for i in $(seq 1 60); do [ -d /srv/sync/documents/.stfolder ] && [ -d /srv/sync/camera/.stfolder ] && exit 0; sleep 1; done; exit 1');
});

after(async () => {
  await h?.exec(['sh', '-c', 'systemctl stop syncthing.service; umount /srv/sync']).catch(() => undefined);
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('syncpi status: drive health', () => {
  test('no disk under the folders: SMART unavailable and said why; free space and power read', async () => {
    const { r, host } = await status();
    assert.ok(host.health, JSON.stringify(host));
    const { smart, storage, power } = host.health;
    assert.equal(smart.state, 'unavailable');
    assert.match(smart.reason, /\/srv\/sync is on syncpi-test-store, not a block device/);
    assert.equal(storage.path, '/srv/sync');
    assert.equal(storage.sizeBytes, 16 * 1024 * 1024);
    assert.equal(storage.low, false);
    assert.equal(storage.minFreePercent, 10);
    // A container has neither vcgencmd nor the rpi_volt sensor: nothing is claimed about power.
    assert.equal(power.undervoltage, false);
    assert.ok(!power.sources.includes('vcgencmd') && !power.sources.includes('hwmon'), JSON.stringify(power));
    assert.equal(host.ok, true, JSON.stringify(host));
    assert.equal(r.exitCode, 0, r.stderr);
  });

  test('smartctl really ran on the host: an unreadable device is unavailable, not healthy', async () => {
    // What the probe runs, on a device that exists but has no SMART: the container's /dev/null.
    const out = await h.exec(['sh', '-c', 'smartctl --json -H -A -i -d auto /dev/null; true']);
    const { parseSmartctl } = await import('../../src/health/smart.js');
    const rep = parseSmartctl(out.stdout);
    assert.equal(rep.state, 'unavailable', out.stdout);
  });

  test('filled past the threshold: the free-space warning, and status needs attention', async () => {
    await sh('head -c 15728640 /dev/zero > /srv/sync/filler');
    const { r, host } = await status();
    assert.equal(host.health!.storage.low, true, JSON.stringify(host.health));
    assert.equal(host.ok, false);
    assert.equal(r.exitCode, 1);
    // a lower threshold accepts the same state
    const lenient = await status(['--min-free', '1']);
    assert.equal(lenient.host.health!.storage.low, false, JSON.stringify(lenient.host.health));
    const text = await syncpi(['status', '-i', h.keyPath, '--known-hosts', kh, inventory]);
    assert.match(text.stdout, /LOW: \d+% free/);
    assert.match(text.stdout, /\/srv\/sync: less than 10% free/);
    await sh('rm -f /srv/sync/filler');
  });

  test('health.alert on the host: the real unit reports the change to its command once, and leaves with the config', async () => {
    const out = '/var/lib/syncpi/alert-test.jsonl';
    const c = testAppliance({ pubKey: `${h.keyPath}.pub`, drive: 'none' }) as { system: { hostname: string }; health?: unknown };
    c.health = { alert: { command: ['/usr/bin/tee', '-a', out] } };
    const withAlert = await writeYaml(path.join(dir, 'alert.yaml'), c);
    const provision = async (file: string) => {
      const p = await syncpi(['provision', '--json', '-i', h.keyPath, '--known-hosts', kh, `pi@${h.ip}`, file]);
      assert.equal(p.exitCode, 0, `${p.stdout.slice(-3000)}\n${p.stderr}`);
    };
    await provision(withAlert);
    assert.equal(await sh('stat -c "%a %U %G" /usr/local/lib/syncpi/health-alert'), '755 root root');
    assert.equal(await sh('systemctl is-active syncpi-health.timer'), 'active');
    // the timer's first run is minutes away: runs are started by hand, as the timer would
    await sh('systemctl start syncpi-health.service');
    assert.equal(await sh(`test -e ${out} && echo sent || echo nothing`), 'nothing', 'nothing for an ok state');
    await sh('head -c 15728640 /dev/zero > /srv/sync/filler');
    await sh('systemctl start syncpi-health.service && systemctl start syncpi-health.service');
    const lines = (await sh(`cat ${out}`)).split('\n');
    assert.equal(lines.length, 1, 'one report for one change');
    const report = JSON.parse(lines[0]!) as { host: string; state: string; problems: string[] };
    assert.deepEqual([report.host, report.state, report.problems], [c.system.hostname, 'problem', ['/srv/sync: less than 10% free']]);
    await sh('rm -f /srv/sync/filler');
    // without health.alert, its units and script leave the host
    await provision(path.join(dir, 'appliance.yaml'));
    assert.equal(await sh('for f in /usr/local/lib/syncpi/health-alert /etc/systemd/system/syncpi-health.service /etc/systemd/system/syncpi-health.timer; do [ ! -e "$f" ] || echo "$f"; done'), '');
    assert.equal(await sh('systemctl is-active syncpi-health.timer || true'), 'inactive');
  });

  test('a stopped folder says why (Syncthing\'s own reason)', async () => {
    // Syncthing gives a folder with nothing indexed a new marker: give it a file first, indexed
    // by the scan every start begins with, then take the marker away.
    await sh('echo kept > /srv/sync/documents/kept.txt && chown syncthing:syncthing /srv/sync/documents/kept.txt && systemctl restart syncthing.service');
    for (let i = 0; i < 30; i++) {
      const d = (await status()).host.folders.find((f) => f.id === 'documents');
      if (d?.state === 'idle') break;
      await new Promise((res) => setTimeout(res, 2000));
    }
    await sh('rm -rf /srv/sync/documents/.stfolder && systemctl restart syncthing.service');
    let host: HostStatusReport | undefined;
    // right after the restart Syncthing's API is not up yet: that is reported too, as an error
    // that is not the folder's own, so the wait is for Syncthing's answer
    for (let i = 0; i < 20; i++) {
      host = (await status()).host;
      const d = host.folders.find((f) => f.id === 'documents');
      if (d?.error && d.state !== 'unknown' && host.folders.find((f) => f.id === 'camera')?.inSync) break;
      await new Promise((res) => setTimeout(res, 2000));
    }
    const docs = host!.folders.find((f) => f.id === 'documents')!;
    assert.match(docs.error ?? '', /marker/i, JSON.stringify(host!.folders));
    assert.equal(docs.inSync, false);
    assert.ok(host!.folders.find((f) => f.id === 'camera')!.inSync, 'the other folder is unaffected');
    assert.equal(host!.ok, false);
  });
});
