#!/usr/bin/env node
// Runs the test suite with node's own test runner. `node scripts/run-tests.mjs [unit|integration] [filter]`.
// Integration tests need root, loop devices and the host tools scripts/setup-host.sh installs.
// Prints the spec report, then one closing line "N passed, N failed, N skipped".
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const [kind, filter] = process.argv.slice(2);
const roots = kind ? [join('test', kind)] : [join('test', 'unit'), join('test', 'integration')];
const files = [];
const walk = (dir) => {
  let entries = [];
  try { entries = readdirSync(dir); } catch { return; }
  for (const e of entries.sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.test.ts') && (!filter || p.includes(filter))) files.push(p);
  }
};
roots.forEach(walk);
if (files.length === 0) {
  console.error(`no test files found under ${roots.join(', ')}`);
  process.exit(1);
}
const dir = mkdtempSync(join(tmpdir(), 'syncpi-tests-'));
const tap = join(dir, 'report.tap');
const r = spawnSync(process.execPath, [
  '--import', 'tsx', '--test', '--test-concurrency=1',
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  '--test-reporter=tap', `--test-reporter-destination=${tap}`,
  ...files,
], { stdio: 'inherit' });
let text = '';
try { text = readFileSync(tap, 'utf8'); } catch { /* the runner died before writing */ }
rmSync(dir, { recursive: true, force: true });
const count = (k) => Number(new RegExp(`^# ${k} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
console.log(`${count('pass')} passed, ${count('fail') + count('cancelled')} failed, ${count('skipped')} skipped`);
process.exit(r.status ?? 1);
