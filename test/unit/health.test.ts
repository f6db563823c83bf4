/**
 * Drive and power health from real-shaped inputs: smartctl --json outputs (the loop-device ones
 * captured from smartctl 7.3 on a real loop device; the others in smartctl's documented shape),
 * vcgencmd get_throttled values, the rpi_volt hwmon alarm and the kernel's undervoltage count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bestSmart, freeSpaceLow, parseSmartctl, parseThrottled, powerReport } from '../../src/health/smart.js';
import { fixtures } from '../helpers/fixtures.js';

const sample = (name: string): string => readFileSync(join(fixtures, 'smart', name), 'utf8');

test('a loop device (no SMART at all) is unavailable, with smartctl\'s own reason: not healthy, not failing', () => {
  const auto = parseSmartctl(sample('loop-auto.json'));
  assert.equal(auto.state, 'unavailable');
  assert.match(auto.reason, /Unable to detect device type/);
  const sat = parseSmartctl(sample('loop-sat.json'));
  assert.equal(sat.state, 'unavailable');
  assert.equal(sat.type, 'sat');
  assert.equal(bestSmart([sample('loop-auto.json'), sample('loop-sat.json')]).state, 'unavailable');
});

test('a healthy drive behind a USB bridge (-d sat): healthy, with its counters and temperature', () => {
  const r = parseSmartctl(sample('ata-sat-healthy.json'));
  assert.equal(r.state, 'healthy');
  assert.deepEqual([r.reallocatedSectors, r.pendingSectors, r.offlineUncorrectable, r.udmaCrcErrors, r.temperatureC, r.type], [0, 0, 0, 0, 31, 'sat']);
  // auto-detection failed, -d sat answered: the answer wins
  assert.equal(bestSmart([sample('loop-auto.json'), sample('ata-sat-healthy.json')]).state, 'healthy');
});

test('SMART passed but pending sectors or CRC errors: a warning naming them', () => {
  const r = parseSmartctl(sample('ata-sat-pending-crc.json'));
  assert.equal(r.state, 'warning');
  assert.match(r.reason, /8 pending sectors/);
  assert.match(r.reason, /3 UDMA CRC errors/);
  assert.doesNotMatch(r.reason, /reallocated/);
});

test('SMART overall health failed: failing, with the counters', () => {
  const r = parseSmartctl(sample('ata-failing.json'));
  assert.equal(r.state, 'failing');
  assert.match(r.reason, /FAILED; 1872 reallocated sectors, 64 pending sectors, 64 offline-uncorrectable sectors$/);
});

test('NVMe critical warning bits are named', () => {
  const r = parseSmartctl(sample('nvme-reliability-degraded.json'));
  assert.equal(r.state, 'warning');
  assert.equal(r.nvmeCriticalWarning, 4);
  assert.match(r.reason, /reliability degraded/);
  assert.equal(r.temperatureC, 44);
});

test('output that is not smartctl JSON (sudo refused, smartctl missing) is unavailable', () => {
  for (const t of ['', 'sudo: a password is required', '{"foo": 1}', '[]']) assert.equal(parseSmartctl(t).state, 'unavailable', JSON.stringify(t));
});

test('get_throttled: under-voltage now or since boot, throttling', () => {
  assert.deepEqual(parseThrottled('throttled=0x0'), { undervoltage: false, throttled: false });
  assert.deepEqual(parseThrottled('throttled=0x10000'), { undervoltage: true, throttled: false });
  assert.deepEqual(parseThrottled('throttled=0x50000'), { undervoltage: true, throttled: true });
  assert.deepEqual(parseThrottled('throttled=0x50005'), { undervoltage: true, throttled: true });
  assert.deepEqual(parseThrottled('throttled=0x40000'), { undervoltage: false, throttled: true });
  assert.equal(parseThrottled('VCHI initialization failed'), null);
});

test('power: any source that saw under-voltage counts; none readable says so', () => {
  assert.equal(powerReport({ hwmonAlarm: '1' }).undervoltage, true);
  const k = powerReport({ hwmonAlarm: '0', kernelUndervoltage: '3' });
  assert.equal(k.undervoltage, true);
  assert.match(k.reason, /3 "Undervoltage detected!"/);
  assert.deepEqual(k.sources, ['hwmon', 'kernel log']);
  const none = powerReport({});
  assert.equal(none.undervoltage, false);
  assert.deepEqual(none.sources, []);
  assert.match(none.reason, /no power data/);
  assert.equal(powerReport({ throttled: 'throttled=0x0', hwmonAlarm: '0', kernelUndervoltage: '0' }).reason, 'no under-voltage or throttling');
});

test('free space below the threshold', () => {
  assert.equal(freeSpaceLow(5, 100, 10), true);
  assert.equal(freeSpaceLow(10, 100, 10), false);
  assert.equal(freeSpaceLow(undefined, 100, 10), false);
});
