/**
 * Bootstrap progress from mmdebstrap's real --verbose output (test/fixtures/logs/: a bookworm
 * amd64 `--variant=apt --include=less,syncthing` run on this kind of machine, mirror replaced).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { bootstrapLineReader, progressDetail, slowestSetups } from '../../src/image/bootstrap-progress.js';

const lines = readFileSync('test/fixtures/logs/mmdebstrap-verbose.log', 'utf8').split('\n');

test('the total is what apt announced in both phases, and every package is counted unpacked and configured once', () => {
  const r = bootstrapLineReader();
  const seen: number[] = [];
  lines.forEach((l, i) => {
    if (r.line(l, i * 10)) seen.push(r.progress.configured);
  });
  r.end(lines.length * 10);
  const p = r.progress;
  // 89 essential/apt packages, then "0 upgraded, 2 newly installed" for less and syncthing
  assert.equal(p.total, 91);
  assert.equal(p.unpacked, 91);
  assert.equal(p.configured, 91);
  assert.equal(p.downloaded, lines.filter((l) => /^Get:\d+ /.test(l)).length);
  assert.ok(p.downloaded > 0);
  assert.equal(p.setupMs.size, 91, 'one timing per package');
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'counts only grow');
  assert.equal(progressDetail(p), `downloaded ${p.downloaded}/91, unpacked 91/91, configured 91/91`);
});

test('a package set up is timed until the next line that starts something else, and the slowest come first', () => {
  const r = bootstrapLineReader();
  const feed: Array<[string, number]> = [
    ['Setting up man-db (2.11.2-2) ...', 0],
    ['Building database of manual pages ...', 5],
    ['Setting up libc-bin:arm64 (2.36-9) ...', 40_000],
    ['Processing triggers for libc-bin (2.36-9) ...', 41_000],
    ['Setting up syncthing (1.19.2) ...', 50_000],
  ];
  for (const [l, t] of feed) r.line(l, t);
  r.end(53_000);
  assert.deepEqual(slowestSetups(r.progress, 2), [
    { name: 'man-db', ms: 40_000 },
    { name: 'syncthing', ms: 3_000 },
  ]);
  assert.equal(r.progress.setupMs.get('libc-bin'), 1_000, 'the architecture suffix is not part of the name');
  assert.equal(r.progress.total, 0);
  assert.equal(progressDetail(r.progress), 'downloaded 0, unpacked 0, configured 3');
});
