/**
 * A fleet of 8 real hosts (systemd-nspawn, sshd, own network namespaces): bounded concurrency,
 * one host whose key changed (refused), one whose dpkg breaks midway (reported, others go on),
 * canaries, --max-fail, per-host logs, the JSON report, and `fleet check` finding drift.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startHosts, stopAll, writeKnownHosts, type TestHost } from '../helpers/hosts.js';
import { demoPlan, DEMO_DIR } from '../helpers/hosts-plan.js';
import { applyToHost, type HostSpec } from '../../src/provision/host.js';
import { archiveOf } from '../../src/targets/apply.js';
import { runFleet } from '../../src/fleet/run.js';
import { summaryTable } from '../../src/fleet/report.js';
import { loadInventory, selectHosts } from '../../src/fleet/inventory.js';
import { UserError } from '../../src/util/errors.js';

const N = 8;
const CHANGED_KEY = 2;
const BROKEN = 5;
let hosts: TestHost[] = [];
let dir: string;
let kh: string;

before(async () => {
  const t0 = Date.now();
  hosts = await startHosts(N, { broken: [BROKEN] });
  process.stderr.write(`# booted ${N} hosts in ${Date.now() - t0} ms (per host: ${hosts.map((h) => h.bootMs).join(', ')} ms)\n`);
  dir = await mkdtemp(path.join(tmpdir(), 'syncpi-fleet-'));
  kh = path.join(dir, 'known_hosts');
  await writeKnownHosts(kh, hosts);
  // Reinstalled after we recorded it: its key no longer matches known_hosts.
  await hosts[CHANGED_KEY]!.rotateHostKey();
});

after(async () => {
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const specs = (): HostSpec[] => hosts.map((h) => ({ name: h.name, address: h.ip, user: h.user, port: h.port }));

async function fleet(version: number, o: { check?: boolean; parallel?: number; canary?: number; maxFail?: number; order?: HostSpec[] }) {
  const archive = await archiveOf(demoPlan({ version }));
  let running = 0;
  let peak = 0;
  const runDir = await mkdtemp(path.join(dir, 'run-'));
  const result = await runFleet(
    o.order ?? specs(),
    async (h, ctx) => {
      running++;
      peak = Math.max(peak, running);
      try {
        return await applyToHost(h, archive, {
          check: o.check,
          policy: { identities: [hosts[0]!.keyPath], knownHostsFile: kh },
          onRecord: (kind, step) => kind === 'STEP' && ctx.setState(step ?? ''),
          onOutput: (c) => ctx.log.write(c),
        });
      } finally {
        running--;
      }
    },
    { parallel: o.parallel ?? 4, canary: o.canary, maxFail: o.maxFail, runDir, display: 'lines' },
  );
  return { result, peak };
}

describe('fleet apply on 8 hosts', () => {
  test('bounded concurrency; the changed-key host is refused, the broken one fails, the others converge', async () => {
    const t0 = Date.now();
    const { result, peak } = await fleet(1, { parallel: 4 });
    process.stderr.write(`# fleet apply (8 hosts, 4 at once): ${Date.now() - t0} ms\n${summaryTable(result)}\n`);
    assert.ok(peak <= 4, `at most 4 at once (saw ${peak})`);
    assert.ok(peak >= 2, 'hosts ran in parallel');
    const by = new Map(result.reports.map((r) => [r.name, r]));
    const changed = by.get(hosts[CHANGED_KEY]!.name)!;
    assert.equal(changed.status, 'failed');
    assert.equal(changed.error?.exitCode, 2);
    assert.match(changed.error!.message, /CHANGED/);
    const broken = by.get(hosts[BROKEN]!.name)!;
    assert.equal(broken.status, 'failed');
    assert.equal(broken.failure?.step, 'packages-install');
    for (const [i, h] of hosts.entries()) {
      if (i === CHANGED_KEY || i === BROKEN) continue;
      assert.equal(by.get(h.name)!.status, 'changed', `${h.name}: ${JSON.stringify(by.get(h.name)!.failure ?? by.get(h.name)!.error)}`);
      assert.ok(existsSync(path.join(h.root, DEMO_DIR, 'f000.conf')));
    }
    // Per-host logs and the JSON report.
    for (const h of hosts) assert.ok(existsSync(path.join(result.runDir, `${h.name}.log`)));
    assert.match(readFileSync(path.join(result.runDir, `${hosts[BROKEN]!.name}.log`), 'utf8'), /simulated dpkg failure/);
    const report = JSON.parse(readFileSync(path.join(result.runDir, 'report.json'), 'utf8')) as { summary: { changed: number; failed: number } };
    assert.deepEqual([report.summary.changed, report.summary.failed], [N - 2, 2]);
    // The changed-key host was never touched.
    assert.equal(existsSync(path.join(hosts[CHANGED_KEY]!.root, DEMO_DIR)), false);
  });

  test('a no-op rerun reports every healthy host unchanged', async () => {
    const t0 = Date.now();
    const { result } = await fleet(1, { parallel: 8 });
    process.stderr.write(`# fleet no-op rerun (8 hosts, 8 at once): ${Date.now() - t0} ms\n`);
    for (const r of result.reports) {
      if (r.name === hosts[CHANGED_KEY]!.name || r.name === hosts[BROKEN]!.name) assert.equal(r.status, 'failed');
      else assert.equal(r.status, 'unchanged', r.name);
    }
  });

  test('check finds drift on a host changed behind our back and changes nothing', async () => {
    const h = hosts[0]!;
    await writeFile(path.join(h.root, DEMO_DIR, 'f001.conf'), 'edited by hand\n');
    const { result } = await fleet(1, { check: true, parallel: 8 });
    const r = result.reports.find((x) => x.name === h.name)!;
    assert.equal(r.status, 'changed');
    assert.match(r.diffs[`${DEMO_DIR}/f001.conf`] ?? '', /^-edited by hand$/m);
    assert.equal(readFileSync(path.join(h.root, DEMO_DIR, 'f001.conf'), 'utf8'), 'edited by hand\n');
    // The broken host never got its packages: check reports that drift too, without failing.
    const b = result.reports.find((x) => x.name === hosts[BROKEN]!.name)!;
    assert.equal(b.status, 'changed');
    assert.ok(b.changes.some((c) => c.kind === 'package' && c.target === 'syncthing' && c.action === 'install'));
    for (const x of result.reports) if (x.name !== h.name && x !== b && x.status !== 'failed') assert.equal(x.status, 'unchanged', x.name);
  });

  test('a failing canary stops the run before the other hosts', async () => {
    const order = [specs()[BROKEN]!, ...specs().filter((_, i) => i !== BROKEN)];
    const { result } = await fleet(2, { canary: 1, order });
    assert.equal(result.reports[0]!.status, 'failed');
    assert.match(result.stopped ?? '', /canary/);
    for (const r of result.reports.slice(1)) assert.equal(r.status, 'skipped', r.name);
    assert.match(readFileSync(path.join(hosts[0]!.root, DEMO_DIR, 'f000.conf'), 'utf8'), /version 1/, 'untouched');
  });

  test('--max-fail stops starting hosts once reached', async () => {
    const order = [specs()[CHANGED_KEY]!, specs()[BROKEN]!, ...specs().filter((_, i) => i !== BROKEN && i !== CHANGED_KEY)];
    const { result } = await fleet(2, { maxFail: 2, parallel: 1, order });
    assert.deepEqual(result.reports.slice(0, 2).map((r) => r.status), ['failed', 'failed']);
    assert.match(result.stopped ?? '', /max-fail 2/);
    assert.ok(result.reports.slice(2).every((r) => r.status === 'skipped'));
  });
});

describe('inventory', () => {
  test('values merge defaults ← groups ← host; unknown groups are named', async () => {
    const inv = path.join(dir, 'fleet.yaml');
    await writeFile(path.join(dir, 'appliance.yaml'), 'system: {hostname: x}\n');
    await writeFile(
      inv,
      [
        'appliance: ./appliance.yaml',
        'defaults: {user: pi, values: {panel: {tunnel_only: true, user: a}}}',
        'groups:',
        '  office: {values: {panel: {user: b}, system: {timezone: Europe/London}}, hosts: [two]}',
        'hosts:',
        '  one: {address: 10.213.1.2, values: {system: {hostname: one}}}',
        '  two: {address: 10.213.2.2, port: 2222, values: {system: {hostname: two}}}',
      ].join('\n') + '\n',
    );
    const loaded = loadInventory(inv);
    const two = loaded.hosts.find((h) => h.name === 'two')!;
    assert.equal(two.port, 2222);
    assert.deepEqual(two.values, { panel: { tunnel_only: true, user: 'b' }, system: { timezone: 'Europe/London', hostname: 'two' } });
    assert.deepEqual(selectHosts(loaded, 'office').map((h) => h.name), ['two']);
    await writeFile(inv, 'appliance: ./appliance.yaml\nhosts:\n  one: {address: 10.213.1.2, groups: [nope]}\n');
    assert.throws(() => loadInventory(inv), (e: unknown) => e instanceof UserError && /"nope" is not a group/.test(e.message));
    await writeFile(inv, 'appliance: ./appliance.yaml\nhosts:\n  one: {adress: 10.213.1.2}\n');
    assert.throws(() => loadInventory(inv), (e: unknown) => e instanceof UserError && /fleet\.yaml:3:\d+: hosts\.one/.test(e.message + (e as UserError).details.join('\n')));
  });
});
