/** Pure parts of the QEMU harness and the host commands: boot file choice, cmdline, drive, device IDs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adaptCmdline, pickBootFiles } from '../../src/vm/boot-files.js';
import { diskSize, GUEST_FORWARD_ADDR, qemuArgs, raspi3bArgs, RASPI3B_DTB, vmCmdline } from '../../src/vm/qemu.js';
import { driveFromPlan, judgeConsole, mountUnitOf } from '../../src/vm/image-test.js';
import { readConsole } from '../../src/vm/console.js';
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

const raspiInput = {
  kernel: '/w/kernel',
  initrd: '/w/initrd',
  dtb: `/w/${RASPI3B_DTB}`,
  cmdline: 'root=PARTUUID=1234abcd-02 rootwait',
  overlay: '/w/disk.qcow2',
  serialLog: '/w/serial-first.log',
};
const valuesOf = (args: string[], opt: string): string[] => args.flatMap((a, i) => (args[i - 1] === opt ? [a] : []));

test('raspi3b: the board with the image\'s own kernel, initrd and Pi 3 device tree, the card on its SD bus', () => {
  const args = raspi3bArgs(raspiInput);
  assert.deepEqual(valuesOf(args, '-M'), ['raspi3b']);
  assert.deepEqual(valuesOf(args, '-kernel'), ['/w/kernel']);
  assert.deepEqual(valuesOf(args, '-initrd'), ['/w/initrd']);
  assert.deepEqual(valuesOf(args, '-dtb'), ['/w/bcm2837-rpi-3-b.dtb']);
  assert.deepEqual(valuesOf(args, '-drive'), ['if=sd,file=/w/disk.qcow2,format=qcow2']);
  // the machine fixes memory and cores; asking for others is an error on raspi3b
  assert.deepEqual(valuesOf(args, '-m'), []);
  assert.deepEqual(valuesOf(args, '-smp'), []);
  // QEMU wires -serial to the PL011 first and the mini UART second; the dtb's stdout-path is
  // serial1, the mini UART, so the log is the second
  assert.deepEqual(valuesOf(args, '-serial'), ['null', 'file:/w/serial-first.log']);
  assert.ok(args.includes('-nodefaults') && args.includes('-no-reboot'));
});

test('raspi3b: no network at all; the drive is USB storage', () => {
  assert.deepEqual(valuesOf(raspi3bArgs(raspiInput), '-netdev'), []);
  assert.deepEqual(valuesOf(raspi3bArgs(raspiInput), '-device'), []);
  const withDrive = raspi3bArgs({ ...raspiInput, drive: '/w/a,b.img' });
  assert.deepEqual(valuesOf(withDrive, '-drive'), ['if=sd,file=/w/disk.qcow2,format=qcow2', 'if=none,id=usbdisk,file=/w/a,,b.img,format=raw']);
  assert.deepEqual(valuesOf(withDrive, '-device'), ['usb-storage,drive=usbdisk']);
});

test('the raspi3b card is a power of two larger than the image; virt keeps its 2 GiB of room', () => {
  const GiB = 1024 ** 3;
  assert.equal(diskSize('raspi3b', 1.6 * GiB), 4 * GiB);
  assert.equal(diskSize('raspi3b', 2.5 * GiB), 8 * GiB);
  assert.equal(diskSize('raspi3b', 1.6 * GiB, 5 * GiB), 8 * GiB);
  assert.equal(diskSize('virt', 1.6 * GiB), 4 * GiB);
  assert.equal(diskSize('virt', 2.5 * GiB), 5 * GiB);
});

test('raspi3b cmdline: the device tree picks the console, systemd reports units on it, root= stays', () => {
  const out = vmCmdline('raspi3b', 'console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 rootwait');
  assert.doesNotMatch(out, /console=/);
  assert.match(out, /(^| )root=PARTUUID=1234abcd-02( |$)/);
  assert.match(out, /(^| )systemd\.show_status=1( |$)/);
  assert.equal(vmCmdline('virt', 'root=PARTUUID=1234abcd-02'), 'root=PARTUUID=1234abcd-02 console=ttyAMA0,115200 panic=-1');
});

const consoleLog = [
  '[    3.100000] Run /init as init process',
  '[  155.641885] systemd[1]: Started systemd-journald.service - Journal Service.',
  '\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39msyncthing.se…e\x1b[0m - cut to the console width',
  '[  176.200000] systemd[1]: Timed out waiting for device dev-disk-by\\x2dlabel-SYNCDRIVE.device - /dev/disk/by-label/SYNCDRIVE.',
  '[  176.210000] systemd[1]: Dependency failed for srv-sync.mount - /srv/sync.',
  '[  176.220000] systemd[1]: Set up automount srv-sync.automount.',
  '[  190.000000] systemd[1]: smartmontools.service: Failed with result \'exit-code\'.',
  '[  190.000100] systemd[1]: Failed to start smartmontools.service - Self Monitoring and Reporting Technology (SMART) Daemon.',
  '[  200.000000] systemd[1]: Finished syncpi-ssh-host-keys.service - Generate SSH host keys on first boot.',
  '[  201.000000] systemd[1]: demo.service: Failed with result \'exit-code\'.',
  '[  211.000000] systemd[1]: Started demo.service - restarted and up.',
  '\rsyncpi login: [  230.000000] systemd[1]: Started ssh.service - OpenBSD Secure Shell server.',
  '[  240.000000] systemd[1]: Reached target multi-user.target - Multi-User System.',
  '[  260.000000] systemd[1]: Mounted srv-sync.mount - /srv/sync.',
  '[  270.000000] systemd[1]: Started syncthing.service - Syncthing file synchronisation.',
].join('\n');

test('the serial console tells which units failed (last word a failure), which came up, and when multi-user was reached', () => {
  const r = readConsole(consoleLog);
  assert.equal(r.multiUserAt, 240);
  // a unit that failed and then started again is not failed; a dependency failure is not a failure
  assert.deepEqual(r.failed, [{ unit: 'smartmontools.service', result: 'exit-code' }]);
  for (const u of ['ssh.service', 'syncthing.service', 'srv-sync.mount', 'srv-sync.automount', 'demo.service', 'syncpi-ssh-host-keys.service']) assert.ok(r.up.has(u), u);
  assert.equal(r.up.has('smartmontools.service'), false);
  // status lines cut to the console width are not read as unit names
  assert.equal(r.events.some((e) => e.unit.includes('…')), false);
});

test('a raspi3b boot is judged from its console: each promise a named outcome with the evidence', () => {
  const drive = { mount: '/srv/sync', fs: 'ext4', label: 'SYNCDRIVE' };
  const by = (o: ReturnType<typeof judgeConsole>, re: RegExp) => o.find((x) => re.test(x.check.description));
  const bad = judgeConsole(readConsole(consoleLog), drive, true);
  assert.equal(by(bad, /no unit failed/)?.status, 'fail');
  assert.match(by(bad, /no unit failed/)!.detail, /smartmontools\.service \(exit-code\)/);
  for (const re of [/multi-user/, /sshd started/, /drive is mounted/, /Syncthing started/, /one SSH host key generator ran/]) assert.equal(by(bad, re)?.status, 'pass', String(re));
  const good = judgeConsole(readConsole(consoleLog.split('\n').filter((l) => !/smartmontools/.test(l)).join('\n')), drive, true);
  assert.deepEqual(good.filter((x) => x.status !== 'pass'), []);
  const two = judgeConsole(readConsole(`${consoleLog}\n[  199.000000] systemd[1]: Finished sshd-keygen.service - Generate sshd host keys on first boot.`), drive, true);
  assert.equal(by(two, /one SSH host key generator ran/)?.status, 'fail');
  const none = judgeConsole(readConsole('[ 1.0] systemd[1]: Started ssh.service - x.'), drive, true);
  assert.equal(by(none, /multi-user/)?.status, 'fail');
  assert.equal(by(none, /Syncthing started/)?.status, 'fail');
  assert.equal(mountUnitOf('/srv/sync'), 'srv-sync');
  assert.equal(mountUnitOf('/srv/my-drive/'), 'srv-my\\x2ddrive');
});
