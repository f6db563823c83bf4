/** Which drives `syncpi init` offers, from lsblk output as util-linux prints it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { driveChoices } from '../../src/cli/init-drives.js';
import { parseLsblk } from '../../src/flash/devices.js';

const node = (o: Record<string, unknown>) => ({ 'maj:min': '8:0', rm: false, hotplug: false, ro: false, size: 1 << 30, mountpoints: [null], fstype: null, label: null, uuid: null, tran: null, ...o });

test('drives on the system disk are never offered; others are, by UUID, with label, file system, size and bus', () => {
  const json = JSON.stringify({
    blockdevices: [
      node({ name: 'nvme0n1', type: 'disk', tran: 'nvme', children: [
        node({ name: 'nvme0n1p1', type: 'part', fstype: 'vfat', label: 'EFI', uuid: '1A2B-3C4D', mountpoints: ['/boot/efi'] }),
        node({ name: 'nvme0n1p2', type: 'part', fstype: 'ext4', label: 'data', uuid: '0f3c2a51-8d1e-4b7a-9c2d-1e2f3a4b9b2e', mountpoints: [null] }),
        node({ name: 'nvme0n1p3', type: 'part', fstype: 'ext4', uuid: '1f3c2a51-8d1e-4b7a-9c2d-1e2f3a4b9b2e', mountpoints: ['/'] }),
      ] }),
      node({ name: 'sda', type: 'disk', tran: 'usb', rm: true, size: 2000398934016, children: [
        node({ name: 'sda1', type: 'part', fstype: 'exfat', label: 'PHOTOS', uuid: '64e3-9a1f', size: 2000397795328 }),
        node({ name: 'sda2', type: 'part', fstype: 'swap', uuid: '2f3c2a51-8d1e-4b7a-9c2d-1e2f3a4b9b2e' }),
      ] }),
      node({ name: 'sdb', type: 'disk', tran: 'usb', fstype: 'ext4', label: 'SYNCDRIVE', uuid: '3F3C2A51-8D1E-4B7A-9C2D-1E2F3A4B9B2E', size: 500107862016 }),
      node({ name: 'sdc', type: 'disk', tran: 'usb', fstype: 'ext4', label: null, uuid: null }),
    ],
  });
  const got = driveChoices(parseLsblk(json));
  assert.deepEqual(got.map((d) => [d.path, d.fs, d.uuid, d.label]), [
    ['/dev/sda1', 'exfat', '64E3-9A1F', undefined],
    ['/dev/sdb', 'ext4', '3f3c2a51-8d1e-4b7a-9c2d-1e2f3a4b9b2e', undefined],
  ]);
  assert.match(got[0]!.title, /^\/dev\/sda1  "PHOTOS"  exfat  1\.8 TiB  usb$/);
  assert.match(got[1]!.title, /^\/dev\/sdb  "SYNCDRIVE"  ext4  465\.8 GiB  usb$/);
});
