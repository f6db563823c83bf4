/**
 * `syncpi image test`: boot the image in QEMU with a virtual external drive, run the Plan's checks
 * over SSH, then boot the same machine without the drive (it must still come up, and Syncthing
 * must refuse to run against the empty mount point), then with the drive again (the data is
 * still there and Syncthing runs). Each boot continues the previous one's disk, like a real card.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { execa } from 'execa';
import type { Plan, PlanCheck } from '../plan/types.js';
import { authorizedKeysPath } from '../plan/derived-files.js';
import { withCleanup, type CleanupScope } from '../util/cleanup.js';
import { Failure, UserError } from '../util/errors.js';
import type { Reporter } from '../util/report.js';
import { formatDuration } from '../util/report.js';
import { SshConnection } from '../targets/ssh-connection.js';
import { SshTarget } from '../targets/ssh.js';
import { shJoin } from '../util/shell.js';
import { sshConnector, verifyLive, type CheckOutcome } from '../verify/live.js';
import { bootVm, DEFAULT_FORWARDS, makeDriveImage, type Machine, type Vm } from './qemu.js';
import { CONSOLE_UNIT_LOG, readConsole, type ConsoleReport } from './console.js';

export interface ImageTestOptions {
  image: string;
  plan: Plan;
  panel: { user: string; password: string } | null;
  identities?: string[];
  bootTimeoutMs?: number;
  reporter: Reporter;
  /** Keep the scratch dir (overlay, serial logs) for inspection. */
  keep?: boolean;
  /** Skip the boots without and with the drive again (first boot and checks only). */
  quick?: boolean;
  /** Let the VM reach beyond this machine (NTP, apt); the test is offline by default. */
  outsideNetwork?: boolean;
  /** The emulated board: virt (default; SSH and the Plan's checks) or raspi3b (serial console). */
  machine?: Machine;
}

/** A result line of the image test: a Plan check, or one of the boot checks. */
export interface TestOutcome {
  phase: string;
  check: { kind: string; description: string };
  status: 'pass' | 'fail' | 'skip';
  detail: string;
}

export interface ImageTestResult {
  outcomes: TestOutcome[];
  bootMs: Record<string, number>;
  totalMs: number;
  workDir?: string;
}

export interface DriveSpec {
  mount: string;
  label?: string;
  uuid?: string;
  fs: string;
}

/** The drive the Plan expects, from its fstab check and the fstab line it renders. */
export function driveFromPlan(plan: Plan): DriveSpec | undefined {
  const c = plan.checks.find((x): x is Extract<PlanCheck, { kind: 'fstab' }> => x.kind === 'fstab');
  if (!c) return undefined;
  let fs = 'ext4';
  for (const f of plan.files) {
    for (const line of f.content.split('\n')) {
      const w = line.trim().split(/\s+/);
      if (w[0] === c.spec && w[1] === c.path && w[2]) fs = w[2];
    }
  }
  const m = /^(LABEL|UUID)=(.+)$/.exec(c.spec);
  if (!m) throw new UserError(`the drive is referenced as ${c.spec}; the image test can attach drives referenced by LABEL= or UUID=`);
  return { mount: c.path, fs, ...(m[1] === 'LABEL' ? { label: m[2] } : { uuid: m[2] }) };
}

async function makeDrive(path: string, d: DriveSpec): Promise<void> {
  if (d.fs !== 'ext4') throw new UserError(`the image test attaches ext4 drives; the config's drive is ${d.fs}`);
  await makeDriveImage(path, d.label ?? 'SYNCDRIVE');
  if (d.uuid) await execa('tune2fs', ['-U', d.uuid, path], { stdin: 'ignore' });
}

function loginUser(plan: Plan): string {
  const u = plan.users.find((x) => !x.system && plan.files.some((f) => f.path === authorizedKeysPath(x.home)));
  if (!u) throw new UserError('the config gives no user an SSH key: the image test logs in with one');
  return u.name;
}

/** Reach guest ports through QEMU's forwards when there is one, else through SSH. */
function vmConnector(vm: Vm, ssh: SshTarget): (host: string, port: number) => Promise<Duplex> {
  const viaSsh = sshConnector(ssh.connection);
  return (host, port) => {
    const f = DEFAULT_FORWARDS.find((x) => x.guestPort === port);
    const local = f ? vm.ports[f.name] : undefined;
    if (local === undefined || !['127.0.0.1', 'localhost', '0.0.0.0'].includes(host)) return viaSsh(host, port);
    return new Promise((res, rej) => {
      const s = net.connect({ host: '127.0.0.1', port: local }, () => res(s));
      s.once('error', rej);
    });
  };
}

async function sh(ssh: SshTarget, script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await ssh.runScript(script);
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

/** The mount unit systemd makes for an absolute path (systemd-escape --path, for plain paths). */
export function mountUnitOf(path: string): string {
  const name = path.replace(/^\/+|\/+$/g, '').split(/\/+/).map((p) => p.replace(/[^A-Za-z0-9:_.]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)).join('-');
  return name || '-';
}

/** The Plan's first-boot host key generator and the ones the bases bring: at most one may run. */
const HOST_KEY_GENERATORS = ['syncpi-ssh-host-keys.service', 'sshd-keygen.service', 'regenerate_ssh_host_keys.service', 'syncpi-ssh-hostkeys.service'];

/** Judge a boot from its console: the outcomes of a raspi3b boot. */
export function judgeConsole(report: ConsoleReport, drive: DriveSpec | undefined, withDrive: boolean): Array<Omit<TestOutcome, 'phase'>> {
  const out: Array<Omit<TestOutcome, 'phase'>> = [];
  const add = (kind: string, description: string, ok: boolean, detail: string): void => {
    out.push({ check: { kind, description }, status: ok ? 'pass' : 'fail', detail });
  };
  const seen = (unit: string): string => {
    const e = [...report.events].reverse().find((x) => x.unit === unit);
    return e ? `${e.event} at ${e.at.toFixed(1)} s` : 'never seen on the console';
  };
  add('boot', 'reaches multi-user.target', report.multiUserAt !== undefined, report.multiUserAt !== undefined ? `at ${report.multiUserAt.toFixed(1)} s kernel time` : 'not reached');
  add('boot', 'no unit failed (systemctl --failed is empty)', report.failed.length === 0, report.failed.length ? report.failed.map((f) => `${f.unit} (${f.result})`).join(', ') : `${report.events.length} unit events, no failure`);
  add('service-active', 'sshd started', report.up.has('ssh.service'), `ssh.service ${seen('ssh.service')}`);
  const ran = HOST_KEY_GENERATORS.filter((u) => report.events.some((e) => e.unit === u && (e.event === 'started' || e.event === 'finished')));
  add('boot', 'one SSH host key generator ran at first boot', ran.length === 1, ran.join(', ') || 'none ran');
  if (drive) {
    const mount = `${mountUnitOf(drive.mount)}.mount`;
    const automount = `${mountUnitOf(drive.mount)}.automount`;
    const driveState = report.up.has(mount) ? 'mounted' : report.up.has(automount) ? 'waiting (automount set up)' : `${mount} ${seen(mount)}, ${automount} ${seen(automount)}`;
    if (withDrive) {
      add('drive', 'the drive is mounted', report.up.has(mount), `${mount} ${seen(mount)}`);
      add('service-active', 'Syncthing started', report.up.has('syncthing.service'), `syncthing.service ${seen('syncthing.service')}`);
    } else {
      add('drive', 'the drive unit is waiting for the drive', report.up.has(automount) || report.up.has(mount), driveState);
    }
  }
  return out;
}

/**
 * The image on an emulated Raspberry Pi 3 B: its own kernel, initramfs and device tree, the card
 * on the board's SD host, the drive on its USB. No network reaches it, so the console is read:
 * multi-user reached, no failed unit, sshd up, the drive mounted and Syncthing running.
 */
async function runRaspi3bTest(o: ImageTestOptions): Promise<ImageTestResult> {
  const t0 = Date.now();
  const drive = driveFromPlan(o.plan);
  const outcomes: TestOutcome[] = [];
  const bootMs: Record<string, number> = {};
  const workDir = await mkdtemp(join(tmpdir(), 'syncpi-vm-'));
  return withCleanup(async (scope) => {
    if (!o.keep) scope.defer('vm:workdir', () => rm(workDir, { recursive: true, force: true }));
    const drivePath = join(workDir, 'drive.img');
    if (drive) await makeDrive(drivePath, drive);
    const timeout = o.bootTimeoutMs ?? 900_000;
    const vm = await o.reporter.step(
      'boot raspi3b',
      () =>
        bootVm(scope, {
          image: o.image,
          workDir,
          name: 'raspi3b',
          machine: 'raspi3b',
          ...(drive ? { drive: drivePath } : {}),
          bootTimeoutMs: timeout,
          readyOnSerial: /systemd\[1\]: Reached target multi-user\.target/,
          extraCmdline: CONSOLE_UNIT_LOG,
        }),
      (v) => `multi-user after ${formatDuration(v.bootMs)}`,
    );
    bootMs.raspi3b = vm.bootMs;
    // Units still starting after multi-user (the drive's, Syncthing after it): wait for them,
    // then a quiet spell, so a unit failing late is seen too.
    const settle = Date.now() + Math.min(300_000, timeout);
    const wanted = drive ? ['syncthing.service'] : ['ssh.service'];
    let report = readConsole(await readFile(vm.serialLog, 'utf8'));
    await o.reporter.step('wait for the boot to settle', async () => {
      while (Date.now() < settle && !wanted.every((u) => report.up.has(u) || report.failed.some((f) => f.unit === u))) {
        await new Promise((r) => setTimeout(r, 5000));
        report = readConsole(await readFile(vm.serialLog, 'utf8'));
      }
      await new Promise((r) => setTimeout(r, 20_000));
      report = readConsole(await readFile(vm.serialLog, 'utf8'));
    });
    await vm.stop();
    for (const x of judgeConsole(report, drive, true)) outcomes.push({ phase: 'raspi3b', ...x });
    return { outcomes, bootMs, totalMs: Date.now() - t0, ...(o.keep ? { workDir } : {}) };
  });
}

export async function runImageTest(o: ImageTestOptions): Promise<ImageTestResult> {
  if (o.machine === 'raspi3b') return runRaspi3bTest(o);
  const t0 = Date.now();
  const { plan, reporter } = o;
  const drive = driveFromPlan(plan);
  const user = loginUser(plan);
  const outcomes: TestOutcome[] = [];
  const bootMs: Record<string, number> = {};
  const add = (phase: string, kind: string, description: string, ok: boolean | 'skip', detail: string): void => {
    outcomes.push({ phase, check: { kind, description }, status: ok === 'skip' ? 'skip' : ok ? 'pass' : 'fail', detail });
  };
  const workDir = await mkdtemp(join(tmpdir(), 'syncpi-vm-'));

  return withCleanup(async (scope) => {
    if (!o.keep) scope.defer('vm:workdir', () => rm(workDir, { recursive: true, force: true }));
    const drivePath = join(workDir, 'drive.img');
    if (drive) await makeDrive(drivePath, drive);
    let overlay: string | undefined;

    const boot = async (name: string, withDrive: boolean, inner: CleanupScope): Promise<{ vm: Vm; ssh: SshTarget }> => {
      const vm = await reporter.step(
        `boot ${name}${withDrive ? '' : ' (no drive)'}`,
        () =>
          bootVm(inner, {
            image: o.image,
            workDir,
            name,
            ...(overlay ? { overlay } : {}),
            ...(withDrive && drive ? { drive: drivePath } : {}),
            bootTimeoutMs: o.bootTimeoutMs ?? 300_000,
            outsideNetwork: !!o.outsideNetwork,
          }),
        (v) => `SSH after ${formatDuration(v.bootMs)}`,
      );
      overlay = vm.overlay;
      bootMs[name] = vm.bootMs;
      add(name, 'boot', `boots and answers SSH within ${Math.round((o.bootTimeoutMs ?? 300_000) / 1000)} s`, true, `sshd banner after ${formatDuration(vm.bootMs)}`);
      // a fresh VM each run, with host keys made at its first boot: trust on first use, in a
      // known_hosts file of its own (the second boot must present the same keys)
      const conn = await SshConnection.connect({
        host: '127.0.0.1',
        port: vm.ports.ssh!,
        // A VM of this run on a forwarded loopback port: no Host entry of the user's is about it.
        sshConfigFile: null,
        user,
        ...(o.identities?.length ? { identities: o.identities } : {}),
        knownHostsFile: join(workDir, 'known_hosts'),
        acceptNewHostKey: true,
        connectTimeoutMs: 60_000,
      });
      inner.defer(`ssh:${name}`, () => conn.close());
      const ssh = new SshTarget(conn);
      // Checks judge a settled system, not one still starting units.
      const st = await reporter.step(`wait for boot ${name} to settle`, () => sh(ssh, 'timeout 240 systemctl is-system-running --wait; systemctl --failed --no-legend --plain | cut -d" " -f1'), (r) => r.stdout.trim().split('\n').join(' '));
      const state = st.stdout.trim().split('\n');
      add(name, 'boot', 'system reaches running state', state[0] === 'running' || state[0] === 'degraded', `${state[0] ?? 'unknown'}${state.length > 1 ? `; failed units: ${state.slice(1).join(' ')}` : ''}`);
      return { vm, ssh };
    };

    const powerOff = async (vm: Vm, ssh: SshTarget): Promise<void> => {
      await sh(ssh, 'systemctl poweroff').catch(() => undefined);
      if (!(await vm.exited(120_000))) await vm.stop();
    };

    // 1. with the drive: the Plan's checks
    await withCleanup(async (inner) => {
      const { vm, ssh } = await boot('first', true, inner);
      const results: CheckOutcome[] = await reporter.step('run the plan\'s checks', () =>
        verifyLive(ssh, plan, { connect: vmConnector(vm, ssh), sshHost: '127.0.0.1', sshPort: vm.ports.ssh!, user, panel: o.panel }),
      );
      for (const r of results) add('first', r.check.kind, r.check.description, r.status === 'skip' ? 'skip' : r.status === 'pass', r.detail);
      if (drive && !o.quick) {
        const put = await sh(ssh, `printf 'kept\\n' > ${shJoin([`${drive.mount}/syncpi-image-test.txt`])} && sync`);
        add('first', 'drive', 'a file can be written to the drive', put.code === 0, put.code === 0 ? `${drive.mount}/syncpi-image-test.txt` : put.stderr.trim());
      }
      await powerOff(vm, ssh);
    });
    if (o.quick || !drive) return { outcomes, bootMs, totalMs: Date.now() - t0, ...(o.keep ? { workDir } : {}) };

    // 2. without the drive
    await withCleanup(async (inner) => {
      const { vm, ssh } = await boot('no-drive', false, inner);
      // sample twice across Syncthing's restart delay: a retry must not bring it up either
      const probe = async (): Promise<string> =>
        (await sh(ssh, 'systemctl show -p ActiveState -p SubState -p Result --value syncthing.service | tr "\\n" " "; pgrep -x syncthing >/dev/null && echo RUNNING || true')).stdout.trim();
      const a = await probe();
      await new Promise((r) => setTimeout(r, 15_000));
      const b = await probe();
      const down = (s: string): boolean => !s.includes('RUNNING') && !s.startsWith('active ');
      add('no-drive', 'drive', 'Syncthing is not running without the drive', down(a) && down(b), `syncthing.service: ${a} / 15 s later: ${b}`);
      const j = await sh(ssh, 'journalctl -b --no-pager -o cat -u syncthing.service | tail -n 20');
      const why = j.stdout.split('\n').find((l) => /not mounted|Dependency failed|dependency/i.test(l));
      add('no-drive', 'drive', 'Syncthing says why it stays down', !!why, why?.trim() ?? `journal: ${j.stdout.trim().split('\n').slice(-3).join(' | ') || 'empty'}`);
      // Look under the mount point on the root file system itself (a bind mount of / does not
      // trigger the automount): nothing may have been created there.
      const under = await sh(
        ssh,
        `d=$(mktemp -d) && mount --bind / "$d" && ls -A "$d"${shJoin([drive.mount])} ; rc=$?; umount "$d"; rmdir "$d"; exit $rc`,
      );
      const left = under.stdout.trim();
      add('no-drive', 'drive', 'nothing was written to the empty mount point', under.code === 0 && left === '', under.code === 0 ? (left ? `found: ${left.split('\n').join(' ')}` : `${drive.mount} on the root file system is empty`) : under.stderr.trim());
      await powerOff(vm, ssh);
    });

    // 3. the drive is back: its data is intact and Syncthing runs again
    await withCleanup(async (inner) => {
      const { ssh } = await boot('drive-back', true, inner);
      const f = await sh(ssh, `cat ${shJoin([`${drive.mount}/syncpi-image-test.txt`])}`);
      add('drive-back', 'drive', 'the drive\'s files are intact after a boot without it', f.stdout.trim() === 'kept', f.code === 0 ? 'file written before is still there' : f.stderr.trim());
      const s = await sh(ssh, 'for i in $(seq 1 60); do systemctl is-active --quiet syncthing.service && break; sleep 2; done; systemctl is-active syncthing.service');
      add('drive-back', 'service-active', 'Syncthing runs again with the drive back', s.stdout.trim() === 'active', `syncthing.service is ${s.stdout.trim()}`);
      const m = await sh(ssh, `ls -A ${shJoin([drive.mount])}`);
      add('drive-back', 'drive', 'folder markers are still on the drive', m.code === 0, m.stdout.trim().split('\n').join(' '));
    });
    return { outcomes, bootMs, totalMs: Date.now() - t0, ...(o.keep ? { workDir } : {}) };
  }).catch((e: unknown) => {
    if (e instanceof Failure && outcomes.length) e.details.unshift(...outcomes.filter((x) => x.status === 'fail').map((x) => `failed before: ${x.check.description} — ${x.detail}`));
    throw e;
  });
}
