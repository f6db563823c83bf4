/** Pure parts of the QEMU harness and the host commands: boot file choice, cmdline, drive, device IDs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adaptCmdline, pickBootFiles } from '../../src/vm/boot-files.js';
import { GUEST_FORWARD_ADDR, qemuArgs } from '../../src/vm/qemu.js';
import { driveFromPlan } from '../../src/vm/image-test.js';
import { parseDeviceId } from '../../src/cli/share.js';
import { planFromFile } from '../../src/plan/load.js';
import { UserError } from '../../src/util/errors.js';
import type { Plan } from '../../src/plan/types.js';

test('config.txt of the Debian raspi-firmware layout names kernel and initramfs', () => {
  const cfg = 'arm_64bit=1\n# comment\nkernel=vmlinuz-6.12.1-arm64\ninitramfs initrd.img-6.12.1-arm64 followkernel\n';
  assert.deepEqual(pickBootFiles(cfg, ['vmlinuz-6.12.1-arm64', 'initrd.img-6.12.1-arm64']), { kernel: 'vmlinuz-6.12.1-arm64', initrd: 'initrd.img-6.12.1-arm64' });
});

test('Raspberry Pi OS layout: kernel8.img with initramfs8 when auto_initramfs=1', () => {
  assert.deepEqual(pickBootFiles('auto_initramfs=1\narm_64bit=1\n', ['kernel8.img', 'kernel_2712.img', 'initramfs8', 'initramfs_2712']), { kernel: 'kernel8.img', initrd: 'initramfs8' });
  assert.deepEqual(pickBootFiles('arm_64bit=1\n', ['kernel8.img', 'initramfs8']), { kernel: 'kernel8.img', initrd: undefined });
});

test('without config.txt names the newest vmlinuz and its initrd are used', () => {
  assert.deepEqual(pickBootFiles('', ['vmlinuz-6.1.0', 'vmlinuz-6.12.1', 'initrd.img-6.12.1']), { kernel: 'vmlinuz-6.12.1', initrd: 'initrd.img-6.12.1' });
});

test('the cmdline keeps root= and gets the virt UART as its only console', () => {
  const out = adaptCmdline('console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=yes rootwait quiet splash');
  assert.equal(out, 'root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=yes rootwait console=ttyAMA0,115200 panic=-1');
});

test('the default appliance drive is an ext4 labelled SYNCDRIVE at /srv/sync', () => {
  const { plan } = planFromFile('image/appliance.yaml');
  assert.deepEqual(driveFromPlan(plan), { mount: '/srv/sync', fs: 'ext4', label: 'SYNCDRIVE' });
});

test('a drive by PARTUUID cannot be attached by the image test: a clear error', () => {
  const plan = { checks: [{ kind: 'fstab', path: '/srv/x', spec: 'PARTUUID=abc-01', description: '' }], files: [] } as unknown as Plan;
  assert.throws(() => driveFromPlan(plan), (e: unknown) => e instanceof UserError && /LABEL= or UUID=/.test(e.message));
});

test('device ID is found in syncthing output and garbage is not taken for one', () => {
  const id = 'JB2RL7S-VHDZAR2-G34LH2K-277GIJZ-ZIZMV6I-NNOFVUF-BJ2ZYLO-YNAK7A5';
  assert.equal(parseDeviceId(`some log line\n${id}\n`), id);
  assert.equal(parseDeviceId('JB2RL7S-VHDZAR2-G34LH2K\n'), undefined);
  assert.equal(parseDeviceId(id.toLowerCase()), undefined);
});

const argsInput = {
  kernel: '/w/vmlinuz',
  initrd: '/w/initrd.img',
  cmdline: 'root=PARTUUID=1234abcd-02 console=ttyAMA0,115200',
  overlay: '/w/disk.qcow2',
  drive: '/w/drive.img',
  serialLog: '/w/serial-first.log',
  memoryMiB: 1024,
  cpus: 2,
  hostForwards: [{ hostPort: 40022, guestPort: 22 }, { hostPort: 40384, guestPort: 8384 }],
  guestForwards: [],
  outsideNetwork: false,
};

const netdevOf = (args: string[]): string => args[args.indexOf('-netdev') + 1]!;

test('QEMU user network is restricted, forwards bind to loopback, and it is the only NIC', () => {
  const args = qemuArgs(argsInput);
  assert.equal(netdevOf(args), 'user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:40384-:8384');
  assert.equal(args.filter((a) => a === '-netdev').length, 1);
  assert.deepEqual(args.filter((a, i) => args[i - 1] === '-device' && /net/.test(a)), ['virtio-net-pci,netdev=net0']);
  // -nodefaults: no implicit NIC beside ours
  assert.ok(args.includes('-nodefaults'));
  for (const a of args) assert.doesNotMatch(a, /hostfwd=tcp::|hostfwd=tcp:0\.0\.0\.0/, 'no forward on all interfaces');
});

test('guest forwards reach only loopback services; outside access is an explicit opt-in', () => {
  const args = qemuArgs({ ...argsInput, hostForwards: [], guestForwards: [{ guestPort: 80, hostPort: 41080 }] });
  assert.equal(netdevOf(args), `user,id=net0,restrict=on,guestfwd=tcp:${GUEST_FORWARD_ADDR}:80-tcp:127.0.0.1:41080`);
  assert.equal(netdevOf(qemuArgs({ ...argsInput, outsideNetwork: true })), 'user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:40384-:8384');
});

test('a comma in a disk path cannot add QEMU options', () => {
  const args = qemuArgs({ ...argsInput, overlay: '/w/a,format=raw,file=/dev/sda' });
  assert.ok(args.includes('if=none,id=sd,file=/w/a,,format=raw,,file=/dev/sda,format=qcow2,discard=unmap'));
});
