/**
 * The typed verification error and how `--json` carries it: the fields of a
 * ChecksumVerificationError reach the failed step's `step-end` event, an ordinary error's do not,
 * and the human details line names the range, its blocks and bytes, and both digests.
 * (The errors raised by real flashes, with real loop devices: test/integration/flash.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReporter } from '../../src/util/report.js';
import { ChecksumVerificationError, imageMismatch, rangeSpan } from '../../src/flash/mismatch.js';
import { Failure } from '../../src/util/errors.js';
import type { WritePlan } from '../../src/flash/source.js';

const plan: WritePlan = {
  blockSize: 4096,
  imageSize: 10 * 4096 + 100,
  ranges: [{ first: 0, last: 1 }, { first: 5, last: 10 }],
  mapSource: 'bmap',
  mappedBytes: 0,
};

/** The JSON lines a reporter prints while `fn` runs. */
async function jsonLines(fn: (r: ReturnType<typeof createReporter>) => Promise<unknown>): Promise<Array<Record<string, unknown>>> {
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  try {
    await fn(createReporter({ json: true })).catch(() => undefined);
  } finally {
    process.stdout.write = write;
  }
  return out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('a range that spans the partial last block ends at the image end', () => {
  assert.deepEqual(rangeSpan(plan, 1), { firstBlock: 5, lastBlock: 10, start: 5 * 4096, end: 10 * 4096 + 100 });
});

test('the failed step of a verification carries every field of the error in --json', async () => {
  const err = new ChecksumVerificationError('verification failed: /dev/x differs at byte offset 20555', {
    subject: 'medium', range: 1, ...rangeSpan(plan, 1), offset: 20555, expected: 'a'.repeat(64), actual: 'b'.repeat(64),
  });
  const events = await jsonLines((r) => r.step('verify /dev/x', async () => { throw err; }));
  const end = events.find((e) => e.type === 'step-end');
  assert.deepEqual(end?.error, {
    name: 'ChecksumVerificationError',
    message: 'verification failed: /dev/x differs at byte offset 20555',
    subject: 'medium', range: 1, firstBlock: 5, lastBlock: 10, offset: 20555, start: 20480, end: 41060,
    expected: 'a'.repeat(64), actual: 'b'.repeat(64),
  });
  assert.equal(end?.ok, false);
  assert.equal(end?.detail, err.message);
  assert.deepEqual(err.details, [`range 1 (blocks 5-10, bytes 20480-41060): expected sha256 ${'a'.repeat(64)}, read ${'b'.repeat(64)}`]);
  assert.equal(err.exitCode, 1);
});

test('an ordinary failure has no error fields in --json, only its message', async () => {
  const events = await jsonLines((r) => r.step('write', async () => { throw new Failure('disk gone'); }));
  const end = events.find((e) => e.type === 'step-end')!;
  assert.equal(end.detail, 'disk gone');
  assert.ok(!('error' in end), JSON.stringify(end));
});

test('an image that does not match its bmap is blamed on the image, at the range start', () => {
  const e = imageMismatch('x.img', plan, 1, 'c'.repeat(64), 'd'.repeat(64));
  assert.equal(e.subject, 'image');
  assert.equal(e.offset, 5 * 4096);
  assert.match(e.message, /^x\.img does not match its bmap: blocks 5-10 \(offset 20480\)/);
});
