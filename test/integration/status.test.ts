/**
 * A fleet shaped like image/fleet.yaml (groups, per-host hostnames and values over the real
 * appliance) applied by the real CLI to 3 real hosts, then `syncpi status` on it: the Syncthing
 * REST API read through each SSH connection, the drive, free space, and the exit status.
 *   nas-home     family group, a drive that is absent: needs attention
 *   nas-parents  family group, only the camera folder
 *   nas-office   office group (another timezone)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startHosts, stopAll, writeKnownHosts, type TestHost } from '../helpers/hosts.js';
import { ABSENT_LABEL, jsonResult, syncpi, testAppliance, writeYaml, type CliResult } from '../helpers/appliance-config.js';
import type { HostStatusReport } from '../../src/fleet/status.js';

const NAMES = ['nas-home', 'nas-parents', 'nas-office'] as const;
let hosts: TestHost[] = [];
let dir: string;
let kh: string;
let inventory: string;

const host = (name: (typeof NAMES)[number]): TestHost => hosts[NAMES.indexOf(name)]!;
const ssh = (): string[] => ['-i', hosts[0]!.keyPath, '--known-hosts', kh];

interface FleetJson {
  summary: { changed: number; unchanged: number; failed: number; skipped: number; ms: number };
  hosts: Array<{ name: string; status: string; changes: unknown[]; warnings: string[]; roundTrips: number }>;
}

function fleet(cmd: 'apply' | 'check', runDir: string): Promise<CliResult> {
  return syncpi(['fleet', cmd, '--json', '--parallel', '3', '--run-dir', runDir, ...ssh(), inventory]);
}

async function status(extra: string[] = []): Promise<{ r: CliResult; hosts: HostStatusReport[] }> {
  const r = await syncpi(['status', '--json', ...ssh(), ...extra, inventory]);
  try {
    return { r, hosts: (JSON.parse(r.stdout) as { hosts: HostStatusReport[] }).hosts };
  } catch {
    throw new Error(`status printed no JSON (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
  }
}

before(async () => {
  const t0 = Date.now();
  hosts = await startHosts(3, { prefix: 'st' });
  dir = await mkdtemp(path.join(tmpdir(), 'syncpi-status-'));
  kh = await writeKnownHosts(path.join(dir, 'known_hosts'), hosts);
  await writeYaml(path.join(dir, 'appliance.yaml'), testAppliance({ pubKey: `${hosts[0]!.keyPath}.pub`, drive: 'none' }));
  // image/fleet.yaml with the test hosts' addresses (its panel values are left out: the test
  // appliance's panel is tunnel-only, see testAppliance).
  inventory = await writeYaml(path.join(dir, 'fleet.yaml'), {
    appliance: './appliance.yaml',
    defaults: { user: 'pi', port: 22, values: { hardening: { fail2ban: true } } },
    groups: {
      family: { values: {} },
      office: { values: { system: { timezone: 'Europe/London' } } },
    },
    hosts: {
      'nas-home': {
        address: host('nas-home').ip,
        groups: ['family'],
        values: { system: { hostname: 'nas-home' }, drive: { label: ABSENT_LABEL, mount: '/srv/sync', fs: 'ext4', timeout: 10, spin_down: 0 } },
      },
      'nas-parents': {
        address: host('nas-parents').ip,
        groups: ['family'],
        values: { system: { hostname: 'nas-parents' }, sync: { folders: [{ id: 'camera', label: 'Phone camera', path: 'camera', type: 'receiveonly', devices: ['phone'] }] } },
      },
      'nas-office': { address: host('nas-office').ip, groups: ['office'], values: { system: { hostname: 'nas-office' } } },
    },
  });
  process.stderr.write(`# booted 3 hosts in ${Date.now() - t0} ms\n`);
});

after(async () => {
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('fleet apply of the real appliance, then syncpi status', () => {
  test('fleet apply: every host changed, with its own values; per-host logs and report', async () => {
    const runDir = path.join(dir, 'run-1');
    const r = await fleet('apply', runDir);
    process.stderr.write(`# fleet apply, 3 hosts at once: ${r.ms} ms\n`);
    assert.equal(r.exitCode, 0, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
    const res = jsonResult<FleetJson>(r.stdout);
    assert.deepEqual({ ...res.summary, ms: 0 }, { changed: 3, unchanged: 0, failed: 0, skipped: 0, ms: 0, stopped: null });
    for (const h of res.hosts) assert.equal(h.roundTrips, 1, `${h.name}: one run`);
    for (const n of NAMES) {
      assert.equal((await host(n).exec(['hostname'])).stdout.trim(), n);
      assert.ok(existsSync(path.join(runDir, `${n}.log`)), `log of ${n}`);
      // fleet.yaml's defaults: fail2ban on every host, watching SSH through the journal.
      assert.equal((await host(n).exec(['systemctl', 'is-active', 'fail2ban.service'])).stdout.trim(), 'active', n);
    }
    assert.equal((await host('nas-office').exec(['readlink', '/etc/localtime'])).stdout.trim(), '/usr/share/zoneinfo/Europe/London');
    assert.equal((await host('nas-home').exec(['readlink', '/etc/localtime'])).stdout.trim(), '/usr/share/zoneinfo/Europe/Berlin');
    const report = JSON.parse(readFileSync(path.join(runDir, 'report.json'), 'utf8')) as FleetJson;
    assert.equal(report.summary.changed, 3);
    // The drive-absent host is not a failure: it says why Syncthing is held back.
    const home = res.hosts.find((h) => h.name === 'nas-home')!;
    assert.match(home.warnings.join('\n'), /\/srv\/sync is not mounted/);
  });

  test('fleet apply again: every host unchanged; fleet check finds no drift', async () => {
    const r = await fleet('apply', path.join(dir, 'run-2'));
    process.stderr.write(`# fleet apply no-op, 3 hosts: ${r.ms} ms\n`);
    assert.equal(r.exitCode, 0, r.stdout.slice(-3000));
    const res = jsonResult<FleetJson>(r.stdout);
    assert.equal(res.summary.unchanged, 3, JSON.stringify(res.hosts.map((h) => [h.name, h.status, h.changes])));
    const c = await fleet('check', path.join(dir, 'run-3'));
    assert.equal(c.exitCode, 0, c.stdout.slice(-3000));
    const chk = jsonResult<FleetJson>(c.stdout);
    assert.equal(chk.summary.unchanged, 3, JSON.stringify(chk.hosts));
    // Not drift, but said: Syncthing did not come up on the drive-absent host.
    assert.match(chk.hosts.find((h) => h.name === 'nas-home')!.warnings.join('\n'), /restart-syncthing: did not bring its unit up/);
  });

  test('fleet check exits 3 on drift, naming the host and the file; apply repairs it', async () => {
    const h = hosts[1]!;
    const name = NAMES[1];
    const file = path.join(h.root, 'etc/timezone');
    const was = await readFile(file, 'utf8');
    await writeFile(file, 'Etc/Drifted\n');
    const c = await fleet('check', path.join(dir, 'run-drift'));
    assert.equal(c.exitCode, 3, c.stderr + c.stdout.slice(-2000));
    const chk = jsonResult<FleetJson>(c.stdout);
    assert.equal(chk.summary.changed, 1, JSON.stringify(chk.hosts.map((x) => [x.name, x.status])));
    const drifted = chk.hosts.find((x) => x.status === 'changed');
    assert.equal(drifted?.name, name);
    assert.ok((drifted!.changes as Array<{ target: string }>).some((c) => c.target === '/etc/timezone'), JSON.stringify(drifted!.changes));
    assert.equal(await readFile(file, 'utf8'), 'Etc/Drifted\n', 'check changes nothing');
    const a = await fleet('apply', path.join(dir, 'run-repair'));
    assert.equal(a.exitCode, 0, a.stdout.slice(-2000));
    assert.equal(await readFile(file, 'utf8'), was);
  });

  test('status: daemon, folders in sync via the REST API through SSH, drive, free space', async () => {
    // Syncthing scans its folders once after starting: poll until the healthy hosts are idle.
    let s = await status();
    for (let i = 0; i < 60 && !s.hosts.filter((h) => h.name !== 'nas-home').every((h) => h.ok); i++) {
      await new Promise((r) => setTimeout(r, 500));
      s = await status();
    }
    const by = new Map(s.hosts.map((h) => [h.name, h]));
    for (const n of ['nas-parents', 'nas-office'] as const) {
      const h = by.get(n)!;
      assert.equal(h.reachable, true, n);
      assert.equal(h.daemon, 'active', n);
      assert.equal(h.ok, true, `${n}: ${JSON.stringify(h)}`);
      assert.equal(h.drive, undefined, `${n} has no drive configured`);
      assert.ok((h.rootFreeBytes ?? 0) > 100 * 1024 * 1024, `${n}: free space read`);
      assert.ok(h.folders.every((f) => f.inSync && f.state === 'idle' && f.needFiles === 0), JSON.stringify(h.folders));
    }
    assert.deepEqual(by.get('nas-parents')!.folders.map((f) => f.id), ['camera']);
    assert.deepEqual(by.get('nas-office')!.folders.map((f) => f.id).sort(), ['camera', 'documents']);
    const home = by.get('nas-home')!;
    assert.equal(home.reachable, true);
    assert.notEqual(home.daemon, 'active');
    assert.equal(home.drive?.path, '/srv/sync');
    assert.equal(home.drive?.mounted, false);
    assert.equal(home.drive?.freeBytes, undefined);
    assert.equal(home.ok, false);
    // Attention needed somewhere: exit 1.
    assert.equal(s.r.exitCode, 1);
    assert.match(s.r.stderr, /1 of 3 host\(s\) need attention: nas-home/);
  });

  test('status table of the healthy hosts exits 0; a stopped daemon is reported', async () => {
    const ok = await syncpi(['status', ...ssh(), '--limit', 'nas-parents,nas-office', inventory]);
    assert.equal(ok.exitCode, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^nas-parents\s+ok\s+active\s+1\/1 in sync\s+-\s+\S+/m);
    assert.match(ok.stdout, /^nas-office\s+ok\s+active\s+2\/2 in sync\s+-\s+\S+/m);

    const office = host('nas-office');
    assert.equal((await office.exec(['systemctl', 'stop', 'syncthing.service'])).exitCode, 0);
    try {
      const s = await status(['--limit', 'nas-office']);
      assert.equal(s.r.exitCode, 1);
      assert.equal(s.hosts[0]!.daemon, 'inactive');
      assert.equal(s.hosts[0]!.ok, false);
    } finally {
      await office.exec(['systemctl', 'start', 'syncthing.service']);
    }
  });
});
