/**
 * The converger's kernel command-line step on a real Debian rootfs: the one parameter the plan
 * owns (usb-storage.quirks from drive.usb_quirks) is set on /boot/firmware/cmdline.txt and on
 * Debian's /etc/default/raspi-extra-cmdline, every other byte of the line stays, a second apply
 * changes nothing, and it goes again when the plan drops it. A live apply announces the reboot.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { applyToRootfs } from '../../src/targets/rootfs.js';
import { applyBundle, archiveOf } from '../../src/targets/apply.js';
import { withChroot } from '../../src/targets/chroot.js';
import type { ApplyReport } from '../../src/bundle/protocol.js';
import type { Plan } from '../../src/plan/types.js';
import { createReporter } from '../../src/util/report.js';
import { AMD64_SPEC, freshRootfs, removeRootfs } from '../helpers/converger-rootfs.js';
import { emptyPlan } from '../helpers/converger-plan.js';

const reporter = createReporter({ json: true });
const quiet = { ...reporter, step: <T,>(_n: string, fn: (p: () => void) => Promise<T>) => fn(() => undefined), info() {}, warn() {}, result() {}, json: true };

/** As raspi-firmware writes it (leading and trailing space), with a tab and a quoted word a naive split would break. */
const LINE = ' console=serial0,115200 console=tty1 root=PARTUUID=5ec0ffee-02 rw fsck.repair=yes net.ifnames=0 cma=64M rootwait\tdyndbg="file usb.c +p" ';
const CMDLINE = 'boot/firmware/cmdline.txt';
const EXTRA = 'etc/default/raspi-extra-cmdline';
const quirks = (v: string): Plan => emptyPlan({ kernelParams: { 'usb-storage.quirks': v } });

describe('converger: kernel command line in a bookworm amd64 chroot', () => {
  let root = '';
  before(async () => {
    root = await freshRootfs(AMD64_SPEC);
    mkdirSync(join(root, 'boot/firmware'), { recursive: true });
    writeFileSync(join(root, CMDLINE), `${LINE}\n`, { mode: 0o755 });
    chmodSync(join(root, CMDLINE), 0o755);
    // Debian's raspi-firmware is not installable on amd64; its kernel hook is what tells the
    // converger that cmdline.txt is rebuilt on kernel upgrades (from raspi-extra-cmdline)
    mkdirSync(join(root, 'etc/kernel/postinst.d'), { recursive: true });
    writeFileSync(join(root, 'etc/kernel/postinst.d/z50-raspi-firmware'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  });
  after(() => {
    if (root) removeRootfs(root);
  });

  const apply = (plan: Plan, check = false): Promise<ApplyReport> => applyToRootfs(root, plan, { arch: 'amd64', check, reporter: quiet });
  const cmdline = () => readFileSync(join(root, CMDLINE), 'utf8');
  const changes = (r: ApplyReport) => r.changes.map((c) => `${c.kind} ${c.target} ${c.action}`);

  test('--check shows the edit as a diff and changes nothing', async () => {
    const r = await apply(quirks('174c:55aa:u'), true);
    assert.deepEqual(changes(r), [
      'kparam usb-storage.quirks set in /boot/firmware/cmdline.txt',
      'kparam usb-storage.quirks set in /etc/default/raspi-extra-cmdline',
    ]);
    assert.match(r.diffs['/boot/firmware/cmdline.txt']!, /^\+ console=serial0.* rootwait\tdyndbg="file usb\.c \+p" usb-storage\.quirks=174c:55aa:u $/m);
    assert.equal(cmdline(), `${LINE}\n`);
    assert.equal(existsSync(join(root, EXTRA)), false);
  });

  test('apply: only the parameter is added, in both files, one line, atomically; mode kept', async () => {
    const r = await apply(quirks('174c:55aa:u,152d:0578:u'));
    assert.deepEqual(changes(r), [
      'kparam usb-storage.quirks set in /boot/firmware/cmdline.txt',
      'kparam usb-storage.quirks set in /etc/default/raspi-extra-cmdline',
    ]);
    assert.equal(cmdline(), `${LINE.slice(0, -1)} usb-storage.quirks=174c:55aa:u,152d:0578:u \n`);
    assert.equal(readFileSync(join(root, EXTRA), 'utf8'), 'usb-storage.quirks=174c:55aa:u,152d:0578:u\n');
    const st = await execa('stat', ['-c', '%a', join(root, CMDLINE)]);
    assert.equal(st.stdout, '755');
    const left = await execa('find', [join(root, 'boot'), join(root, 'etc/default'), '-name', '.syncpi-tmp.*']);
    assert.equal(left.stdout.trim(), '');
    assert.ok(!r.warnings.some((w) => /reboot/.test(w)), 'an image build is no running system: no reboot to announce');
  });

  test('second apply: no change', async () => {
    const r = await apply(quirks('174c:55aa:u,152d:0578:u'));
    assert.deepEqual(changes(r), []);
  });

  test('a new value replaces the word in place', async () => {
    const r = await apply(quirks('174c:55aa:u'));
    assert.deepEqual(changes(r), [
      'kparam usb-storage.quirks updated in /boot/firmware/cmdline.txt',
      'kparam usb-storage.quirks updated in /etc/default/raspi-extra-cmdline',
    ]);
    assert.equal(cmdline(), `${LINE.slice(0, -1)} usb-storage.quirks=174c:55aa:u \n`);
  });

  test('the plan drops it: the line is byte for byte what it was, the file syncpi created is gone', async () => {
    const r = await apply(emptyPlan());
    assert.deepEqual(changes(r), [
      'kparam usb-storage.quirks removed from /boot/firmware/cmdline.txt',
      'kparam usb-storage.quirks removed from /etc/default/raspi-extra-cmdline',
    ]);
    assert.equal(cmdline(), `${LINE}\n`);
    assert.equal(existsSync(join(root, EXTRA)), false);
    assert.deepEqual(changes(await apply(emptyPlan())), []);
  });

  test('a quirk that was on the line before syncpi set it is taken over, and left there when the plan drops it', async () => {
    writeFileSync(join(root, CMDLINE), `usb_storage.quirks=0bc2:2322:u ${LINE}\n`);
    const r = await apply(quirks('174c:55aa:u'));
    assert.ok(changes(r).includes('kparam usb-storage.quirks updated in /boot/firmware/cmdline.txt'), changes(r).join('\n'));
    // the kernel treats - and _ alike: the same parameter, replaced where it stood
    assert.equal(cmdline(), `usb-storage.quirks=174c:55aa:u ${LINE}\n`);
    const d = await apply(emptyPlan());
    assert.ok(d.warnings.some((w) => /usb-storage\.quirks: left on the kernel command line/.test(w)), d.warnings.join('\n'));
    assert.equal(cmdline(), `usb-storage.quirks=174c:55aa:u ${LINE}\n`);
    // left in effect where syncpi put it too, so a kernel upgrade's new cmdline.txt keeps it
    assert.equal(readFileSync(join(root, EXTRA), 'utf8'), 'usb-storage.quirks=174c:55aa:u\n');
    writeFileSync(join(root, CMDLINE), `${LINE}\n`);
    rmSync(join(root, EXTRA));
  });

  test('a live apply announces the reboot (WARN, /run/reboot-required) and reboots nothing', async () => {
    const bundle = await archiveOf(quirks('174c:55aa:u'));
    const r = await withChroot(root, { arch: 'amd64' }, (t) => applyBundle({ ...t, env: 'live' }, bundle));
    assert.ok(r.ok);
    assert.ok(r.warnings.some((w) => /^reboot needed: the kernel command line changed \(usb-storage\.quirks\)/.test(w)), r.warnings.join('\n'));
    assert.equal(existsSync(join(root, 'run/reboot-required')), true);
    assert.equal(cmdline(), `${LINE.slice(0, -1)} usb-storage.quirks=174c:55aa:u \n`);
    const again = await withChroot(root, { arch: 'amd64' }, (t) => applyBundle({ ...t, env: 'live' }, bundle));
    assert.deepEqual(changes(again), []);
    assert.ok(!again.warnings.some((w) => /reboot/.test(w)), 'nothing changed, no reboot asked for');
  });
});

/** Build machines (containers, small VM kernels) often lack vfat; then this part cannot run here. */
const vfat = /\tvfat$/m.test(readFileSync('/proc/filesystems', 'utf8'));

describe('converger: kernel command line on a FAT boot partition, as a Pi mounts it', { skip: vfat ? false : 'this kernel has no vfat file system' }, () => {
  let root = '';
  let mounted = false;
  before(async () => {
    root = await freshRootfs(AMD64_SPEC);
    const fat = join(root, 'var/tmp/bootfs.img');
    await execa('truncate', ['-s', '16M', fat]);
    await execa('mkfs.vfat', ['-F', '32', '-n', 'bootfs', fat]);
    mkdirSync(join(root, 'boot/firmware'), { recursive: true });
    // what Raspberry Pi OS's fstab gives it: defaults (root's, 0755 files and directories)
    await execa('mount', ['-o', 'loop,defaults', fat, join(root, 'boot/firmware')]);
    mounted = true;
    writeFileSync(join(root, CMDLINE), `${LINE}\n`);
  });
  after(async () => {
    if (mounted) await execa('umount', [join(root, 'boot/firmware')], { reject: false });
    if (root) removeRootfs(root);
  });

  test('set, again, drop: written through a temp file and a rename on vfat, the line back byte for byte', async () => {
    const apply = (plan: Plan) => applyToRootfs(root, plan, { arch: 'amd64', reporter: quiet });
    const cmdline = () => readFileSync(join(root, CMDLINE), 'utf8');
    const r = await apply(quirks('174c:55aa:u'));
    assert.deepEqual(r.changes.map((c) => `${c.kind} ${c.target} ${c.action}`), ['kparam usb-storage.quirks set in /boot/firmware/cmdline.txt']);
    assert.equal(cmdline(), `${LINE.slice(0, -1)} usb-storage.quirks=174c:55aa:u \n`);
    assert.deepEqual((await apply(quirks('174c:55aa:u'))).changes, []);
    const left = await execa('find', [join(root, 'boot/firmware'), '-name', '.syncpi-tmp.*']);
    assert.equal(left.stdout.trim(), '');
    await apply(emptyPlan());
    assert.equal(cmdline(), `${LINE}\n`);
  });
});
