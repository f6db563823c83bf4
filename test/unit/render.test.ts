/**
 * A value that the loader lets through but no target file can hold ends as bad input (exit 2, one
 * line naming the value and why), never as a unit systemd ignores or an XML file Syncthing refuses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { minimalYaml, repoRoot, writeConfig } from '../helpers/fixtures.js';

function plan(extra: string) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), 'plan', writeConfig(minimalYaml(extra))], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
    input: '',
  });
}

test('a description with U+FFFE is bad input, not a unit systemd would ignore', () => {
  const r = plan('services:\n  x:\n    description: "a\\uFFFEb"\n    exec: [/bin/true]\n');
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /command\.service\.hbs: the text "a\\ufffeb" cannot be written: systemd ignores a line holding a Unicode non-character/);
});

test('a service value with a control character systemd refuses is bad input at its key', () => {
  const r = plan('services:\n  x:\n    description: x\n    exec: [/bin/true]\n    values: { A: "x\\u0001" }\n');
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr.trim(), /^error: \S+appliance\.yaml:\d+:\d+: services\.x\.values\.A: got "x\\u0001"; expected one line of text without control characters$/);
});
