/**
 * The human reporter in a log (stderr not a terminal, as under CI or a pipe): a progress line
 * every 10 s of a step, none in its first 10 s, when a rate and ETA would be made from nothing.
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { createReporter } from '../../src/util/report.js';

test('a log gets progress lines 10 s apart, the first 10 s into the step, with the rate of the whole step', async () => {
  const lines: string[] = [];
  const write = mock.method(process.stderr, 'write', (chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  const tty = process.stderr.isTTY;
  process.stderr.isTTY = false;
  mock.timers.enable({ apis: ['Date'], now: Date.parse('2026-12-01T12:00:00Z') });
  try {
    const MiB = 1024 * 1024;
    await createReporter({}).step('copy', async (progress) => {
      progress({ done: 4096, total: 100 * MiB, unit: 'bytes' });
      mock.timers.tick(9_000);
      progress({ done: 9 * MiB, total: 100 * MiB, unit: 'bytes' });
      mock.timers.tick(1_001);
      progress({ done: 10 * MiB, total: 100 * MiB, unit: 'bytes' });
      mock.timers.tick(5_000);
      progress({ done: 15 * MiB, total: 100 * MiB, unit: 'bytes' });
    });
  } finally {
    mock.timers.reset();
    process.stderr.isTTY = tty;
    write.mock.restore();
  }
  const progressLines = lines.filter((l) => l.startsWith('  copy'));
  assert.equal(progressLines.length, 1, lines.join(''));
  assert.match(progressLines[0]!, /^ {2}copy \[##\.+\] 10% 10\.0 MiB\/100\.0 MiB 1023\.9 KiB\/s ETA 1 min 30 s\n$/);
  assert.equal(lines[0], '… copy\n');
  assert.match(lines.at(-1)!, /✔ copy \(15\.0 s\)\n$/);
});
