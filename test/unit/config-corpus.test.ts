/**
 * The bad-config corpus: each file in test/fixtures/bad is named for what it tests and states
 * the message and position it must produce (# expect: / # at:). Exit code 2 is checked through
 * the real CLI for every file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { loadConfig, ConfigError } from '../../src/config/load.js';
import { fixtures, repoRoot } from '../helpers/fixtures.js';

const badDir = join(fixtures, 'bad');
const files = readdirSync(badDir).filter((f) => f.endsWith('.yaml')).sort();

test('the corpus is not empty', () => assert.ok(files.length >= 30));

for (const f of files) {
  test(`bad config: ${f}`, () => {
    const text = readFileSync(join(badDir, f), 'latin1');
    const expect = /^# expect: (.*)$/m.exec(text)?.[1];
    const at = /^# at: (\d+):(\d+)$/m.exec(text);
    assert.ok(expect && at, `${f} must declare # expect: and # at:`);
    let err: unknown;
    try {
      loadConfig(join(badDir, f));
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, `${f} must be rejected with a ConfigError, got ${String(err)}`);
    const match = err.problems.find((p) => `${p.path ? `${p.path}: ` : ''}${p.message}`.includes(expect));
    assert.ok(match, `${f}: expected a problem containing\n  ${expect}\ngot\n  ${err.problems.map((p) => `${p.line}:${p.col} ${p.path}: ${p.message}`).join('\n  ')}`);
    assert.equal(`${match.line}:${match.col}`, `${at[1]}:${at[2]}`, `${f}: position of "${expect}"`);
  });
}

test('the CLI exits 2 with one line per problem and no stack for every bad config', () => {
  for (const f of files) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), 'validate', join(badDir, f)], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    assert.equal(r.status, 2, `${f}: exit code; stderr: ${r.stderr}`);
    assert.match(r.stderr, /^error: /, f);
    assert.doesNotMatch(r.stderr, /\n\s+at .*\.(ts|js):\d+/, `${f}: no stack trace without --debug`);
    assert.match(r.stderr, new RegExp(`${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `), `${f}: message names file:line:col`);
  }
});
