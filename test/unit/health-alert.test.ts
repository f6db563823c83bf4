/**
 * health.alert in the plan (off by default; on: script, units, curl for a URL; the unit names
 * reserved), and the alert's SMART verdict: the generated awk program, run by the real awk on
 * each smartctl sample in smartctl's grep-able form, says what parseSmartctl says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { planFromFile } from '../../src/plan/load.js';
import { parseSmartctl, smartGrepAwk } from '../../src/health/smart.js';
import { ownUnitTakenBy } from '../../src/plan/own-units.js';
import { HEALTH_SCRIPT } from '../../src/plan/features/health.js';
import { fixtures, minimalYaml, writeConfig } from '../helpers/fixtures.js';

const HEALTH_FILES = [HEALTH_SCRIPT, '/etc/systemd/system/syncpi-health.service', '/etc/systemd/system/syncpi-health.timer'];
const plan = (extra: string) => planFromFile(writeConfig(minimalYaml(extra))).plan;
const ALERT = 'health:\n  min_free_percent: 15\n  alert:\n    url: "https://alerts.home.arpa/syncpi?to=pi&x=1"\n    interval: 7\n';

test('without health.alert the plan has no alert script, unit, timer or curl', () => {
  for (const p of [plan(''), plan('health:\n  min_free_percent: 20\n')]) {
    assert.deepEqual(p.files.filter((f) => HEALTH_FILES.includes(f.path) || /syncpi-health/.test(f.path)), []);
    assert.ok(!p.units.enable.some((u) => u.startsWith('syncpi-health')));
    assert.ok(!p.packages.install.includes('curl'));
  }
});

test('health.alert with a URL: a root-owned 0755 script, the service and timer, curl; removing it removes exactly those', () => {
  const on = plan(`drive: { label: DATA }\n${ALERT}`);
  const off = plan('drive: { label: DATA }\nhealth:\n  min_free_percent: 15\n');
  const added = on.files.filter((f) => !off.files.some((o) => o.path === f.path)).map((f) => f.path).sort();
  assert.deepEqual(added, [...HEALTH_FILES].sort());
  const script = on.files.find((f) => f.path === HEALTH_SCRIPT)!;
  assert.deepEqual([script.mode, script.owner, script.group, script.feature], ['0755', 'root', 'root', 'health']);
  assert.match(script.content, /^url='https:\/\/alerts\.home\.arpa\/syncpi\?to=pi&x=1'$/m);
  assert.match(script.content, /^min_free=15$/m);
  assert.match(script.content, /^mount_point=\/srv\/sync$/m);
  assert.match(script.content, /^drive=1$/m);
  assert.match(script.content, /^state_file=\/var\/lib\/syncpi\/health-state$/m);
  const timer = on.files.find((f) => f.path.endsWith('syncpi-health.timer'))!;
  assert.match(timer.content, /^OnUnitInactiveSec=7min$/m);
  assert.ok(timer.notify.includes('restart-syncpi-health.timer'));
  assert.ok(on.units.enable.includes('syncpi-health.timer'));
  assert.ok(on.packages.install.includes('curl'));
  assert.ok(!off.packages.install.includes('curl'));
  assert.ok(on.checks.some((c) => c.kind === 'service-active' && c.unit === 'syncpi-health.timer'));
});

test('health.alert with only a command: no curl, the command with its arguments quoted for sh', () => {
  const p = plan('health:\n  alert:\n    command: [/usr/local/bin/notify, "drive $HOME", "it\'s"]\n');
  assert.ok(!p.packages.install.includes('curl'));
  const script = p.files.find((f) => f.path === HEALTH_SCRIPT)!.content;
  assert.match(script, /^url=''$/m);
  assert.match(script, /^drive=0$/m);
  assert.ok(script.includes(`| /usr/local/bin/notify 'drive $HOME' 'it'\\''s' ||`), script);
});

test('the alert units are syncpi\'s own: a boot service cannot take their names', () => {
  assert.equal(ownUnitTakenBy('health'), 'syncpi-health.service');
});

/** A JSON document in smartctl's --json=g form ("json.a.b[0] = 5;", objects and arrays announced as {} and []). */
function grepForm(value: unknown, path = 'json'): string[] {
  if (Array.isArray(value)) return [`${path} = [];`, ...value.flatMap((v, i) => grepForm(v, `${path}[${i}]`))];
  if (value && typeof value === 'object') return [`${path} = {};`, ...Object.entries(value).flatMap(([k, v]) => grepForm(v, `${path}.${k}`))];
  return [`${path} = ${JSON.stringify(value)};`];
}

test('the alert\'s awk verdict agrees with parseSmartctl on every smartctl sample', () => {
  const samples = readdirSync(join(fixtures, 'smart')).filter((f) => f.endsWith('.json'));
  const seen = new Set<string>();
  for (const name of samples) {
    const text = readFileSync(join(fixtures, 'smart', name), 'utf8');
    const want = parseSmartctl(text);
    const r = spawnSync('awk', [smartGrepAwk()], { input: `${grepForm(JSON.parse(text)).join('\n')}\n`, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const expected = want.state === 'failing' || want.state === 'warning' ? `${want.state} ${want.reason}` : want.state;
    assert.equal(r.stdout.trim(), expected, name);
    seen.add(want.state);
  }
  assert.deepEqual([...seen].sort(), ['failing', 'healthy', 'unavailable', 'warning'], 'the samples cover every verdict');
});

test('the grep form matches smartctl\'s own output format', { skip: spawnSync('sh', ['-c', 'command -v smartctl']).status !== 0 && 'no smartctl here' }, () => {
  // smartctl on a file that is no device still prints its own header in the grep form
  const real = spawnSync('smartctl', ['--json=g', '-i', '/dev/null'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith('json.smartctl.version'));
  const mine = grepForm({ smartctl: { version: [7, 3] } }).filter((l) => l.startsWith('json.smartctl.version'));
  assert.equal(real.length, 3, real.join('\n'));
  assert.deepEqual(real.map((l) => l.replace(/= \d+;/, '= N;')), mine.map((l) => l.replace(/= \d+;/, '= N;')));
});
