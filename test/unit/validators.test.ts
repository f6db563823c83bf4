/** Value checks shared by the schema and the command-line flags, as tables. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalFsUuid, checkCidr, checkDriveMount } from '../../src/config/validators.js';
import { CIDR_CASES } from '../helpers/cidr-cases.js';

test('checkCidr accepts exactly the networks nft reads as written', () => {
  for (const [input, want] of CIDR_CASES) {
    const got = checkCidr(input);
    if (want === 'ok') assert.equal(got, null, input);
    else assert.match(got ?? 'accepted', want, input);
  }
});

test('drive UUIDs are spelled as blkid and /dev/disk/by-uuid spell them', () => {
  const table: [string, string][] = [
    ['0F3C2A51-8D1E-4B7A-9C2D-1E2F3A4B9B2E', '0f3c2a51-8d1e-4b7a-9c2d-1e2f3a4b9b2e'],
    ['0f3c2a51-8d1e-4b7a-9c2d-1e2f3a4b9b2e', '0f3c2a51-8d1e-4b7a-9c2d-1e2f3a4b9b2e'],
    ['1a2b-3c4d', '1A2B-3C4D'],
    ['1A2B-3C4D', '1A2B-3C4D'],
    ['4219211d7760bae8', '4219211D7760BAE8'],
    ['4219211D7760BAE8', '4219211D7760BAE8'],
  ];
  for (const [input, want] of table) assert.equal(canonicalFsUuid(input), want, input);
});

test('a drive may not mount where it would hide or live inside the system', () => {
  const ok = ['/srv/sync', '/srv/a/b', '/mnt', '/mnt/data', '/media/usb', '/data', '/library'];
  for (const p of ok) assert.equal(checkDriveMount(p), null, p);
  const hides = ['/', '/etc', '/usr', '/var', '/var/lib', '/var/lib/syncthing', '/boot', '/boot/firmware', '/home', '/root', '/run', '/proc', '/sys', '/dev', '/tmp', '/bin', '/sbin', '/lib', '/lib64', '/libx32', '/opt', '/srv'];
  for (const p of hides) assert.match(checkDriveMount(p) ?? 'accepted', /^a new directory under \/srv or \/mnt.*would hide \//, p);
  const inside = ['/etc/sync', '/usr/local/sync', '/var/lib/syncthing/data', '/home/pi/sync', '/tmp/sync', '/run/media/x', '/opt/x', '/lib64/x'];
  for (const p of inside) assert.match(checkDriveMount(p) ?? 'accepted', /belongs to the system$/, p);
  for (const p of ['/srv/../etc', '/srv/./sync', '/srv//sync', '/srv/sync/', 'srv/sync', '/srv/my sync']) assert.ok(checkDriveMount(p), p);
});
