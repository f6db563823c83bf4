/**
 * Boot an arm64 appliance image in qemu-system-aarch64 (`-M virt`, TCG) the way a Pi would boot
 * it: the kernel, initramfs and cmdline come from the image's own boot partition, the image is the
 * first disk (behind a qcow2 overlay so it is never written), an optional second disk plays the
 * external USB drive, and user-mode networking forwards SSH, the panel and the sync port to free
 * loopback ports. The serial console goes to a log file; a boot is "up" when sshd's banner
 * arrives on the forwarded port.
 *
 * The user network is restricted (restrict=on) unless the caller opts out: the guest reaches
 * nothing but the forwarded ports and the loopback services named in `guestForwards`, so a boot
 * never depends on, nor sends anything to, the world beyond this machine (NTP, DNS, apt, relays).
 */
import { createWriteStream, existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { CleanupScope } from '../util/cleanup.js';
import { Failure, UserError } from '../util/errors.js';
import { missingTool, tool } from '../util/tool.js';
import { adaptCmdline, extractBootFiles, type BootFiles } from './boot-files.js';
import { plainConsole } from './console.js';
import { ARM64_CPU } from '../targets/chroot.js';

export interface Forward {
  name: string;
  guestPort: number;
}

export interface VmOptions {
  /** Raw SD image; opened read-only through the overlay. */
  image: string;
  /** Scratch directory for the overlay, boot files and logs (the caller removes it). */
  workDir: string;
  /** Reuse this overlay (a second boot of the same machine) instead of making a new one. */
  overlay?: string;
  /** Raw file attached as the external drive; none = the drive is unplugged. */
  drive?: string;
  /** Size of the virtual SD card; larger than the image so first-boot growth is exercised. */
  diskBytes?: number;
  memoryMiB?: number;
  cpus?: number;
  forwards?: Forward[];
  bootTimeoutMs?: number;
  /** Name of this boot, used for the serial log file (serial-NAME.log). */
  name?: string;
  /** Let the guest reach beyond this machine through QEMU's NAT (default: restricted). */
  outsideNetwork?: boolean;
  /** Loopback services of this machine the guest may reach, at GUEST_ADDR:guestPort. */
  guestForwards?: GuestForward[];
  /** The emulated board (default virt). */
  machine?: Machine;
  /**
   * The boot is up when the serial console shows this (instead of sshd's banner on the
   * forwarded port): for a machine the test cannot reach over a network.
   */
  readyOnSerial?: RegExp;
  /** More kernel command line words (after the image's own). */
  extraCmdline?: string[];
}

export type Machine = 'virt' | 'raspi3b';
export const MACHINES: readonly Machine[] = ['virt', 'raspi3b'];

/** A guest connection to 10.0.2.100:guestPort reaches 127.0.0.1:hostPort on this machine. */
export interface GuestForward {
  guestPort: number;
  hostPort: number;
}

/** The address in QEMU's user network where guest forwards appear (unused by slirp itself). */
export const GUEST_FORWARD_ADDR = '10.0.2.100';

export interface Vm {
  pid: number;
  /** Host loopback port per forward name. */
  ports: Record<string, number>;
  overlay: string;
  serialLog: string;
  /** From starting QEMU to the sshd banner on the forwarded port (or the readyOnSerial line). */
  bootMs: number;
  boot: BootFiles;
  /** Stop QEMU (SIGTERM, then SIGKILL) and wait for it; idempotent. */
  stop(): Promise<void>;
  /** Resolves when QEMU exits by itself (e.g. after a poweroff in the guest). */
  exited(timeoutMs: number): Promise<boolean>;
  /** The last lines of the serial console. */
  serialTail(lines?: number): Promise<string[]>;
}

export const DEFAULT_FORWARDS: Forward[] = [
  { name: 'ssh', guestPort: 22 },
  { name: 'panel', guestPort: 8384 },
  { name: 'sync', guestPort: 22000 },
];

const GiB = 1024 * 1024 * 1024;

/** A loopback port nobody listens on right now (QEMU binds it a moment later). */
export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(port));
    });
  });
}

/**
 * Whether an SSH server speaks on the port. QEMU's user-mode network accepts every forwarded
 * connection before the guest listens, so an accepted connect proves nothing: only the banner does.
 */
export function sshBanner(port: number, timeoutMs = 3000): Promise<string | null> {
  return new Promise((res) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (v: string | null): void => {
      clearTimeout(timer);
      sock.destroy();
      res(v);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const line = buf.split('\r\n')[0] ?? '';
      if (buf.includes('\n')) done(line.startsWith('SSH-') ? line.trim() : null);
    });
    sock.on('error', () => done(null));
    sock.on('close', () => done(null));
  });
}

/** An ext4 file system in a sparse file, labelled like the config's drive. */
export async function makeDriveImage(path: string, label: string, bytes = 512 * 1024 * 1024): Promise<void> {
  await tool('mke2fs', ['-F', '-q', '-t', 'ext4', '-L', label, '-E', 'root_owner=0:0', path, `${Math.floor(bytes / 1024)}k`]);
}

export interface QemuArgsInput {
  kernel: string;
  initrd?: string;
  cmdline: string;
  overlay: string;
  drive?: string;
  serialLog: string;
  memoryMiB: number;
  cpus: number;
  hostForwards: Array<{ hostPort: number; guestPort: number }>;
  guestForwards: GuestForward[];
  outsideNetwork: boolean;
}

/** The user-mode network: forwards bound to loopback only, and closed to the world unless asked. */
export function slirpNetdev(i: Pick<QemuArgsInput, 'hostForwards' | 'guestForwards' | 'outsideNetwork'>): string {
  return [
    'user',
    'id=net0',
    ...(i.outsideNetwork ? [] : ['restrict=on']),
    ...i.hostForwards.map((f) => `hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`),
    ...i.guestForwards.map((f) => `guestfwd=tcp:${GUEST_FORWARD_ADDR}:${f.guestPort}-tcp:127.0.0.1:${f.hostPort}`),
  ].join(',');
}

/** A value inside a QEMU option list: a comma would start another option, so it is doubled. */
export function qemuOptValue(v: string): string {
  return v.replace(/,/g, ',,');
}

export interface Raspi3bArgsInput {
  kernel: string;
  initrd?: string;
  /** The board's device tree, from the image's own boot partition. */
  dtb: string;
  cmdline: string;
  /** The SD card: QEMU's SD model takes only a power-of-two size. */
  overlay: string;
  serialLog: string;
  /** Raw file attached as a USB mass-storage drive. */
  drive?: string;
}

/** The raspi3b device tree's stdout-path is serial1, the mini UART: QEMU's second serial port. */
export const RASPI3B_DTB = 'bcm2837-rpi-3-b.dtb';

/**
 * `-M raspi3b`: the BCM2837 board itself (4 × Cortex-A53, 1 GiB, fixed by the machine), so the
 * image meets the Pi 3's own SD host, UARTs and USB. QEMU connects -serial options to the PL011
 * first and the mini UART second; the console is the mini UART, so the first goes nowhere.
 */
export function raspi3bArgs(i: Raspi3bArgsInput): string[] {
  return [
    '-M', 'raspi3b',
    '-accel', 'tcg,thread=multi',
    '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
    '-serial', 'null',
    '-serial', `file:${i.serialLog}`,
    '-kernel', i.kernel,
    ...(i.initrd ? ['-initrd', i.initrd] : []),
    '-dtb', i.dtb,
    '-append', i.cmdline,
    '-drive', `if=sd,file=${qemuOptValue(i.overlay)},format=qcow2`,
    ...(i.drive ? ['-drive', `if=none,id=usbdisk,file=${qemuOptValue(i.drive)},format=raw`, '-device', 'usb-storage,drive=usbdisk'] : []),
    '-no-reboot',
  ];
}

export function qemuArgs(i: QemuArgsInput): string[] {
  return [
    '-M', 'virt',
    '-cpu', ARM64_CPU,
    '-accel', 'tcg,thread=multi',
    '-m', String(i.memoryMiB),
    '-smp', String(i.cpus),
    '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
    '-serial', `file:${i.serialLog}`,
    '-kernel', i.kernel,
    ...(i.initrd ? ['-initrd', i.initrd] : []),
    '-append', i.cmdline,
    '-drive', `if=none,id=sd,file=${qemuOptValue(i.overlay)},format=qcow2,discard=unmap`,
    '-device', 'virtio-blk-pci,drive=sd',
    ...(i.drive ? ['-drive', `if=none,id=usb,file=${qemuOptValue(i.drive)},format=raw`, '-device', 'virtio-blk-pci,drive=usb'] : []),
    '-netdev', slirpNetdev(i),
    '-device', 'virtio-net-pci,netdev=net0',
    // first boot makes SSH host keys and a TLS certificate: without a hardware RNG it can stall
    '-device', 'virtio-rng-pci',
    '-no-reboot',
  ];
}

/**
 * Size of the virtual card: room beyond the image so first-boot growth is exercised; on raspi3b
 * rounded up to a power of two, the only sizes QEMU's SD card model accepts.
 */
export function diskSize(machine: Machine, imageBytes: number, wantBytes = 0): number {
  const size = Math.max(wantBytes, Math.ceil(imageBytes / GiB) * GiB + 2 * GiB);
  if (machine === 'virt') return size;
  let p = GiB;
  while (p < size) p *= 2;
  return p;
}

/**
 * The kernel command line per machine. raspi3b names no console: the kernel then takes its
 * device tree's stdout-path (the mini UART), as on a real Pi 3, and systemd's status lines go
 * there too — the one window a test has into a board without a network.
 */
export function vmCmdline(machine: Machine, cmdline: string, extra: string[] = []): string {
  return machine === 'virt' ? adaptCmdline(cmdline, ['console=ttyAMA0,115200', ...extra]) : adaptCmdline(cmdline, ['systemd.show_status=1', ...extra]);
}

/** Boot the image; the VM is stopped when `scope` ends whatever happens. */
export async function bootVm(scope: CleanupScope, opts: VmOptions): Promise<Vm> {
  const image = resolve(opts.image);
  if (!existsSync(image)) throw new UserError(`${opts.image}: no such image`);
  const imgSize = (await stat(image)).size;
  const name = opts.name ?? 'boot';
  const machine = opts.machine ?? 'virt';
  const boot = await extractBootFiles(image, opts.workDir, machine === 'raspi3b' ? RASPI3B_DTB : undefined);

  let overlay = opts.overlay;
  if (!overlay) {
    overlay = join(opts.workDir, 'disk.qcow2');
    await tool('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image, '-F', 'raw', overlay, String(diskSize(machine, imgSize, opts.diskBytes))]);
  }

  // raspi3b has no dependable network (QEMU's usb-net does not carry SSH): its console is read
  const forwards = machine === 'virt' ? (opts.forwards ?? DEFAULT_FORWARDS) : [];
  const ports: Record<string, number> = {};
  for (const f of forwards) ports[f.name] = await freePort();
  const serialLog = join(opts.workDir, `serial-${name}.log`);
  const network = {
    hostForwards: forwards.map((f) => ({ hostPort: ports[f.name]!, guestPort: f.guestPort })),
    guestForwards: opts.guestForwards ?? [],
    outsideNetwork: !!opts.outsideNetwork,
  };
  const kernelFiles = { kernel: boot.kernel, ...(boot.initrd ? { initrd: boot.initrd } : {}), cmdline: vmCmdline(machine, boot.cmdline, opts.extraCmdline) };
  const drive = opts.drive ? { drive: resolve(opts.drive) } : {};
  const args =
    machine === 'raspi3b'
      ? raspi3bArgs({ ...kernelFiles, dtb: boot.dtb!, overlay, serialLog, ...drive })
      : qemuArgs({ ...kernelFiles, overlay, ...drive, serialLog, memoryMiB: opts.memoryMiB ?? 1024, cpus: opts.cpus ?? 2, ...network });

  const stderrLog = join(opts.workDir, `qemu-${name}.stderr`);
  const t0 = Date.now();
  let child: ResultPromise;
  try {
    child = execa('qemu-system-aarch64', args, { stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', reject: false, cleanup: true });
  } catch (e) {
    throw new Failure(`cannot start qemu-system-aarch64: ${e instanceof Error ? e.message : String(e)}`);
  }
  const errStream = createWriteStream(stderrLog);
  child.stderr?.pipe(errStream);
  const pid = child.pid;
  let exitedFlag = false;
  let spawnError: string | undefined;
  const exitPromise = child.then((r) => {
    exitedFlag = true;
    errStream.end();
    if ((r as { code?: string }).code === 'ENOENT') spawnError = missingTool('qemu-system-aarch64').message;
    return r;
  });

  const stop = async (): Promise<void> => {
    if (exitedFlag || pid === undefined) return;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    const killer = setTimeout(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, 5000);
    await exitPromise;
    clearTimeout(killer);
  };
  scope.defer(`vm:${name}`, stop);

  const serialTail = async (lines = 30): Promise<string[]> => {
    const text = await readFile(serialLog, 'utf8').catch(() => '');
    return text.replace(/\r/g, '').split('\n').slice(-lines);
  };
  const exited = async (timeoutMs: number): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([exitPromise.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), timeoutMs)))]);
    clearTimeout(timer);
    return r;
  };

  if (pid === undefined || spawnError) {
    await exitPromise;
    throw new Failure(spawnError ?? 'qemu-system-aarch64 did not start');
  }

  // Boot is bounded: the deadline covers kernel, initramfs, systemd and first-boot work.
  const deadline = t0 + (opts.bootTimeoutMs ?? 300_000);
  const sshPort = opts.readyOnSerial ? undefined : ports.ssh;
  let bootMs = 0;
  while (opts.readyOnSerial) {
    if (exitedFlag) {
      await exitPromise;
      const err = (await readFile(stderrLog, 'utf8').catch(() => '')).trim().split('\n').slice(-5);
      throw new Failure(spawnError ?? `QEMU exited during boot of ${opts.image}`, [...err, '--- serial console:', ...(await serialTail(25))]);
    }
    if (opts.readyOnSerial.test(plainConsole(await readFile(serialLog, 'utf8').catch(() => '')))) {
      bootMs = Date.now() - t0;
      break;
    }
    if (Date.now() > deadline) {
      throw new Failure(`${opts.image}: the serial console did not show ${opts.readyOnSerial} within ${Math.round((opts.bootTimeoutMs ?? 300_000) / 1000)} s of boot`, ['--- serial console:', ...(await serialTail(30))]);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  while (sshPort !== undefined) {
    if (exitedFlag) {
      await exitPromise;
      const err = (await readFile(stderrLog, 'utf8').catch(() => '')).trim().split('\n').slice(-5);
      throw new Failure(spawnError ?? `QEMU exited during boot of ${opts.image}`, [...err, '--- serial console:', ...(await serialTail(25))]);
    }
    if (Date.now() > deadline) {
      const serial = await readFile(serialLog, 'utf8').catch(() => '');
      // sshd up in the guest but silent here means the guest never got onto QEMU's network
      const hint = /Started .*ssh\.service|login: *$/m.test(serial.replace(/\x1b\[[0-9;]*m/g, ''))
        ? ' (the serial console shows sshd started: the guest has no network on its virtio NIC — no DHCP client or no connection for it?)'
        : '';
      throw new Failure(`${opts.image}: no SSH banner within ${Math.round((opts.bootTimeoutMs ?? 300_000) / 1000)} s of boot${hint}`, ['--- serial console:', ...(await serialTail(30))]);
    }
    if (await sshBanner(sshPort, 2000)) {
      bootMs = Date.now() - t0;
      break;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }

  return { pid, ports, overlay, serialLog, bootMs, boot, stop, exited, serialTail };
}
