/**
 * The scheduling under `fleet apply|check` and `status`: items start in order, never more than
 * `parallel` at once, and a stop reason keeps new items from starting while running ones finish.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { boundedPool } from '../../src/fleet/run.js';

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('fleet pool: every item once, in order, at most `parallel` at once', async () => {
  const started: number[] = [];
  let running = 0;
  let most = 0;
  const why = await boundedPool([...Array(10).keys()], 3, async (item, i) => {
    assert.equal(item, i);
    started.push(item);
    running++;
    most = Math.max(most, running);
    await tick(item % 2 ? 5 : 1);
    running--;
  });
  assert.equal(why, undefined);
  assert.deepEqual(started, [...Array(10).keys()]);
  assert.equal(most, 3);
});

test('fleet pool: once stop gives a reason nothing new starts, the running items finish, the reason comes back', async () => {
  const done: number[] = [];
  let failed = 0;
  const why = await boundedPool(
    [...Array(8).keys()],
    2,
    async (item) => {
      // item 0 fails at once; item 1, started beside it, is still running then
      await tick(item === 0 ? 1 : 30);
      if (item === 0) failed++;
      done.push(item);
    },
    () => (failed >= 1 ? `${failed} failed` : undefined),
  );
  assert.equal(why, '1 failed');
  assert.deepEqual(done, [0, 1]);
});

test('fleet pool: no items, no work, no reason', async () => {
  assert.equal(await boundedPool([], 4, async () => assert.fail('no item to run')), undefined);
});
