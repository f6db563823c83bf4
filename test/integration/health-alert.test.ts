/**
 * The health alert's generated files through their real readers (systemd-analyze verify for the
 * units, sh -n and dash -n for the script), and the rendered script itself run on this machine
 * against a real HTTP server on 127.0.0.1: its storage is a small tmpfs mounted for the test,
 * its state file and hwmon directory are under a scratch directory (the only paths the template
 * is given differently from the Pi's), and it reports with the real curl.
 *  - first run, space ok: nothing sent;
 *  - filled past the threshold: exactly one POST, state problem, the free-space problem named;
 *    the same state again: nothing;
 *  - space back while the server answers 500: the POST fails, the run fails, nothing is
 *    recorded; the next run delivers the ok once, the one after sends nothing;
 *  - the drive unmounted: reported as not mounted;
 *  - the command variant gets the same JSON on stdin, and the rpi_volt alarm is a problem.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { execa } from 'execa';
import { planFromFile } from '../../src/plan/load.js';
import { makeContext } from '../../src/plan/context.js';
import { healthAlertScript, HEALTH_SCRIPT } from '../../src/plan/features/health.js';
import { templatesDir } from '../../src/util/paths.js';
import { minimalYaml, tempDir, writeConfig } from '../helpers/fixtures.js';
import { need, verifyUnits, writeRoot } from '../helpers/generated-files.js';

const ALERT_YAML = (alert: string) => minimalYaml(`drive: { label: DATA, mount: /srv/data }\nhealth:\n  min_free_percent: 20\n  alert:\n${alert}`);

test('systemd-analyze verify accepts the alert\'s service and timer; sh -n and dash -n its script', () => {
  need('systemd-analyze');
  need('dash');
  for (const alert of ['    url: "https://alerts.home.arpa/syncpi?a=1&b=$x"\n    interval: 30\n', '    command: [/usr/bin/logger, -t, "syncpi $HOME", "it\'s"]\n']) {
    const { plan } = planFromFile(writeConfig(ALERT_YAML(alert)));
    const root = writeRoot(plan);
    const unitDir = join(root, 'etc/systemd/system');
    const units = readdirSync(unitDir).filter((u) => u.startsWith('syncpi-health.')).map((u) => join(unitDir, u));
    assert.equal(units.length, 2);
    assert.deepEqual(verifyUnits(units, { cwd: unitDir, planPaths: new Set(plan.files.map((f) => f.path)) }), [], 'systemd-analyze verify');
    for (const shell of ['sh', 'dash']) {
      const r = spawnSync(shell, ['-n', join(root, HEALTH_SCRIPT)], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${shell} -n: ${r.stderr}`);
    }
  }
});

interface Received {
  contentType: string | undefined;
  body: { host: string; state: string; problems: string[]; time: string };
}

describe('the alert script on this machine, against a server on loopback', { skip: process.getuid?.() !== 0 && 'needs root to mount a tmpfs' }, () => {
  const dir = tempDir('syncpi-health-alert-');
  const mnt = join(dir, 'drive');
  const hwmon = join(dir, 'hwmon');
  const stateFile = join(dir, 'state', 'health-state');
  const filler = join(mnt, 'filler');
  let server: Server | undefined;
  let answer = 200;
  const received: Received[] = [];

  after(async () => {
    spawnSync('umount', [mnt]);
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(): Promise<number> {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        received.push({ contentType: req.headers['content-type'], body: JSON.parse(body) as Received['body'] });
        res.writeHead(answer).end();
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const a = server.address();
    assert.ok(a && typeof a === 'object');
    return a.port;
  }

  function render(alert: string): string {
    const { loaded, inputs } = planFromFile(writeConfig(ALERT_YAML(alert)));
    const ctx = makeContext(loaded.config, inputs, { builtin: templatesDir() });
    const script = join(dir, `health-alert-${received.length}-${Date.now()}`);
    writeFileSync(script, healthAlertScript(ctx, { mount: mnt, stateFile, hwmon }), { mode: 0o755 });
    return script;
  }

  const run = (script: string) => execa(script, [], { reject: false });

  test('sends each change once, retries a failed POST, and says nothing while the state holds', async () => {
    need('curl');
    mkdirSync(mnt, { recursive: true });
    mkdirSync(join(hwmon, 'hwmon0'), { recursive: true });
    writeFileSync(join(hwmon, 'hwmon0', 'name'), 'rpi_volt\n');
    writeFileSync(join(hwmon, 'hwmon0', 'in0_lcrit_alarm'), '0\n');
    assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'syncpi-test-drive', mnt]).status, 0, 'mount the test tmpfs');
    const port = await start();
    const script = render(`    url: "http://127.0.0.1:${port}/hook?from=syncpi"\n`);

    let r = await run(script);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(received.length, 0, 'nothing is sent for a first run that finds everything ok');

    // 7 of 8 MiB: below 20% free
    writeFileSync(filler, Buffer.alloc(7 * 1024 * 1024, 1));
    r = await run(script);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(received.length, 1);
    const problem = received[0]!;
    assert.equal(problem.contentType, 'application/json');
    assert.equal(problem.body.host, 'syncpi');
    assert.equal(problem.body.state, 'problem');
    assert.deepEqual(problem.body.problems, [`${mnt}: less than 20% free`]);
    assert.ok(Math.abs(Date.parse(problem.body.time) - Date.now()) < 120_000, problem.body.time);
    assert.match(problem.body.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    r = await run(script);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(received.length, 1, 'the same state again sends nothing');

    rmSync(filler);
    answer = 500;
    r = await run(script);
    assert.notEqual(r.exitCode, 0, 'a POST the server refused fails the run');
    assert.match(r.stderr, /POST to the alert URL failed/);
    assert.equal(received.length, 2);
    assert.equal(readFileSync(stateFile, 'utf8'), `${mnt}: less than 20% free`, 'the undelivered state is not recorded');

    answer = 200;
    r = await run(script);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(received.length, 3, 'the next run sends the change again');
    assert.deepEqual([received[2]!.body.state, received[2]!.body.problems], ['ok', []]);
    r = await run(script);
    assert.equal(received.length, 3, 'and once delivered, not again');

    assert.equal(spawnSync('umount', [mnt]).status, 0);
    r = await run(script);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(received.length, 4);
    assert.deepEqual([received[3]!.body.state, received[3]!.body.problems], ['problem', [`drive: not mounted at ${mnt}`]]);
  });

  test('the command gets the same JSON on stdin; the rpi_volt alarm is a problem', async () => {
    rmSync(stateFile, { force: true });
    if (spawnSync('mountpoint', ['-q', mnt]).status !== 0) assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'syncpi-test-drive', mnt]).status, 0);
    const out = join(dir, 'command-stdin');
    const script = render(`    command: [/usr/bin/tee, -a, "${out}"]\n`);
    let r = await run(script);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.ok(!existsSync(out), 'nothing for an ok first run');
    writeFileSync(join(hwmon, 'hwmon0', 'in0_lcrit_alarm'), '1\n');
    writeFileSync(filler, Buffer.alloc(7 * 1024 * 1024, 1));
    r = await run(script);
    assert.equal(r.exitCode, 0, r.stderr);
    r = await run(script);
    assert.equal(r.exitCode, 0, r.stderr);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    assert.equal(lines.length, 1, 'one report for one change');
    const body = JSON.parse(lines[0]!) as Received['body'];
    assert.equal(body.state, 'problem');
    assert.deepEqual(body.problems, [`${mnt}: less than 20% free`, 'power: rpi_volt in0_lcrit_alarm is set']);
  });
});
