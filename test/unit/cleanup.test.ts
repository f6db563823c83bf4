/**
 * Cleanup on a signal (src/util/cleanup.ts) finishes every action before the process exits, also
 * when the interrupted operation fails meanwhile and its own `finally` drains the same scope: as a
 * build does when the signal's cleanup stops its mmdebstrap.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const CHILD = `
import { writeFileSync } from 'node:fs';
import { withCleanup } from ${JSON.stringify(resolve(import.meta.dirname, '../../src/util/cleanup.ts'))};
const out = process.argv[process.argv.length - 1];
let fail;
// a running subprocess keeps the event loop alive until it is stopped
const running = setInterval(() => {}, 1000);
const operation = new Promise((_, reject) => { fail = reject; }).finally(() => clearInterval(running));
await withCleanup(async (scope) => {
  // registered first, so run last: slow, like removing a work tree
  scope.defer('remove the tree', async () => { await new Promise((r) => setTimeout(r, 300)); writeFileSync(out, 'removed'); });
  // run first on the signal: stopping the subprocess makes the operation fail
  scope.defer('stop the subprocess', async () => { fail(new Error('subprocess gone')); await new Promise((r) => setTimeout(r, 50)); });
  process.stdout.write('ready\\n');
  await operation;
}).catch(() => { process.exitCode = 1; });
`;

test('a signal\'s cleanup waits for the action the failing operation\'s own cleanup is running', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-cleanup-'));
  try {
    const out = join(dir, 'tree');
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD, out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((res) => child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && res()));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    assert.equal(code, 130, stderr);
    assert.ok(existsSync(out) && readFileSync(out, 'utf8') === 'removed', 'the last action ran to its end before the exit');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
