/**
 * Which Raspberry Pi models an image boots on, derived from what it carries: the device trees and
 * GPU firmware on its boot partition and the kernel's architecture and version. Pure: the build
 * feeds it the staged boot partition's file names, validation feeds it the base alone
 * (`baseSupport`), the README's "Which Pi" table is checked against it by a unit test.
 */

/** The ids a config may name under hardware.models (documented in the README's "Which Pi"). */
export const MODEL_IDS = [
  'pi1', 'zero', 'zero-w', 'pi2b',
  'pi3b', 'pi3b-plus', 'pi3a-plus', 'cm3', 'zero2w',
  'pi4b', 'pi400', 'cm4',
  'pi5', 'pi500', 'cm5',
] as const;
export type ModelId = (typeof MODEL_IDS)[number];

type Isa = 'armv6' | 'armv7' | 'armv8';
/** The firmware generation: which files the boot ROM/EEPROM needs on the FAT partition. */
type Firmware = 'videocore4' | 'videocore6' | 'eeprom';

interface Model {
  id: ModelId;
  name: string;
  isa: Isa;
  firmware: Firmware;
  /** The Pi 5 family's I/O (Ethernet, USB, GPIO) sits behind the RP1 southbridge. */
  rp1: boolean;
  /** Device tree names the firmware loads for it: Raspberry Pi's own kernel's, then mainline's (upstream_kernel=1). */
  dtbs: string[];
}

export const MODELS: readonly Model[] = [
  { id: 'pi1', name: 'Pi 1 (A, B, A+, B+)', isa: 'armv6', firmware: 'videocore4', rp1: false, dtbs: ['bcm2708-rpi-b.dtb', 'bcm2708-rpi-b-plus.dtb', 'bcm2835-rpi-b.dtb', 'bcm2835-rpi-b-plus.dtb', 'bcm2835-rpi-a-plus.dtb'] },
  { id: 'zero', name: 'Zero', isa: 'armv6', firmware: 'videocore4', rp1: false, dtbs: ['bcm2708-rpi-zero.dtb', 'bcm2835-rpi-zero.dtb'] },
  { id: 'zero-w', name: 'Zero W', isa: 'armv6', firmware: 'videocore4', rp1: false, dtbs: ['bcm2708-rpi-zero-w.dtb', 'bcm2835-rpi-zero-w.dtb'] },
  { id: 'pi2b', name: 'Pi 2 B', isa: 'armv7', firmware: 'videocore4', rp1: false, dtbs: ['bcm2709-rpi-2-b.dtb', 'bcm2836-rpi-2-b.dtb'] },
  { id: 'pi3b', name: 'Pi 3 B', isa: 'armv8', firmware: 'videocore4', rp1: false, dtbs: ['bcm2710-rpi-3-b.dtb', 'bcm2837-rpi-3-b.dtb'] },
  { id: 'pi3b-plus', name: 'Pi 3 B+', isa: 'armv8', firmware: 'videocore4', rp1: false, dtbs: ['bcm2710-rpi-3-b-plus.dtb', 'bcm2837-rpi-3-b-plus.dtb'] },
  // Raspberry Pi's firmware gives the 3 A+ the 3 B+'s device tree; mainline has its own
  { id: 'pi3a-plus', name: 'Pi 3 A+', isa: 'armv8', firmware: 'videocore4', rp1: false, dtbs: ['bcm2710-rpi-3-b-plus.dtb', 'bcm2837-rpi-3-a-plus.dtb'] },
  { id: 'cm3', name: 'Compute Module 3, 3+', isa: 'armv8', firmware: 'videocore4', rp1: false, dtbs: ['bcm2710-rpi-cm3.dtb', 'bcm2837-rpi-cm3-io3.dtb'] },
  { id: 'zero2w', name: 'Zero 2 W', isa: 'armv8', firmware: 'videocore4', rp1: false, dtbs: ['bcm2710-rpi-zero-2-w.dtb', 'bcm2837-rpi-zero-2-w.dtb'] },
  { id: 'pi4b', name: 'Pi 4 B', isa: 'armv8', firmware: 'videocore6', rp1: false, dtbs: ['bcm2711-rpi-4-b.dtb'] },
  { id: 'pi400', name: 'Pi 400', isa: 'armv8', firmware: 'videocore6', rp1: false, dtbs: ['bcm2711-rpi-400.dtb'] },
  { id: 'cm4', name: 'Compute Module 4', isa: 'armv8', firmware: 'videocore6', rp1: false, dtbs: ['bcm2711-rpi-cm4.dtb', 'bcm2711-rpi-cm4-io.dtb'] },
  { id: 'pi5', name: 'Pi 5', isa: 'armv8', firmware: 'eeprom', rp1: true, dtbs: ['bcm2712-rpi-5-b.dtb'] },
  { id: 'pi500', name: 'Pi 500', isa: 'armv8', firmware: 'eeprom', rp1: true, dtbs: ['bcm2712-rpi-500.dtb'] },
  { id: 'cm5', name: 'Compute Module 5', isa: 'armv8', firmware: 'eeprom', rp1: true, dtbs: ['bcm2712-rpi-cm5-cm5io.dtb'] },
];

/** The kernel each Debian suite ships for arm64/armhf (major.minor). */
export const DEBIAN_SUITE_KERNEL: Record<string, string> = { bookworm: '6.1', trixie: '6.12' };
/** First mainline kernel with drivers for the RP1 (its Ethernet and USB): about 6.17. */
export const RP1_MAINLINE_KERNEL = '6.17';

export interface BaseFacts {
  kind: 'debian' | 'image';
  arch: 'arm64' | 'armhf';
  /** debian */
  suite?: string;
}

/** Files the firmware needs on the FAT partition for each generation (the Pi 5's firmware lives in its EEPROM). */
const FIRMWARE_FILES: Record<Firmware, string[]> = {
  videocore4: ['bootcode.bin', 'start.elf', 'fixup.dat'],
  videocore6: ['start4.elf', 'fixup4.dat'],
  eeprom: [],
};

const PI_OS_ALTERNATIVE = 'a Raspberry Pi OS Lite base (base: image: {source, sha256})';
const PI_OS_ARMHF_ALTERNATIVE = 'a 32-bit Raspberry Pi OS Lite base (base: image: {source, sha256, arch: armhf})';

function versionAtLeast(v: string, min: string): boolean {
  const [a = 0, b = 0] = v.split('.').map(Number);
  const [c = 0, d = 0] = min.split('.').map(Number);
  return a > c || (a === c && b >= d);
}

function modelOf(id: ModelId): Model {
  return MODELS.find((m) => m.id === id)!;
}

/**
 * Why a model cannot run an image of this base, judged from the base alone (arch, Debian suite),
 * or null when nothing in the base rules it out. With `kernel` (major.minor, read from the image)
 * the Debian kernel's version is that one instead of the suite's.
 */
export function baseSupport(id: ModelId, base: BaseFacts, kernel?: string): { reason: string; alternative?: string } | null {
  const m = modelOf(id);
  if (m.isa === 'armv6') {
    if (base.kind === 'debian') return { reason: `${m.name} has an ARMv6 CPU, which Debian supports only as armel (its arm64 and armhf need ARMv8 and ARMv7)`, alternative: PI_OS_ARMHF_ALTERNATIVE };
    if (base.arch === 'arm64') return { reason: `${m.name} has an ARMv6 CPU, which cannot run arm64`, alternative: PI_OS_ARMHF_ALTERNATIVE };
  }
  if (m.isa === 'armv7' && base.arch === 'arm64') return { reason: `${m.name} has an ARMv7 CPU (Cortex-A7), which cannot run arm64`, alternative: 'an armhf base (base: debian: {arch: armhf}, or a 32-bit Raspberry Pi OS Lite image)' };
  if (m.rp1 && base.kind === 'debian') {
    const k = kernel ?? DEBIAN_SUITE_KERNEL[base.suite ?? 'trixie'];
    if (!k || !versionAtLeast(k, RP1_MAINLINE_KERNEL)) {
      return { reason: `${m.name}: its RP1 I/O chip (Ethernet, USB) has no driver in Debian ${base.suite ?? 'trixie'}'s Linux ${k ?? '(unknown)'} (mainline from about ${RP1_MAINLINE_KERNEL})`, alternative: PI_OS_ALTERNATIVE };
    }
  }
  return null;
}

/** The mainline kernel version (major.minor) of the boot partition's vmlinuz-*, if Debian put one there. */
export function debianKernelVersion(files: string[]): string | undefined {
  const v = files.map((f) => /^vmlinuz-(\d+)\.(\d+)/.exec(f)).find(Boolean);
  return v ? `${v[1]}.${v[2]}` : undefined;
}

/** The kernel file a model's firmware would load, by base and arch (Raspberry Pi OS names its kernels by CPU). */
function kernelFor(m: Model, base: BaseFacts, names: Set<string>): string | null {
  if (base.kind === 'debian' || [...names].some((n) => n.startsWith('vmlinuz-'))) {
    return [...names].find((n) => n.startsWith('vmlinuz-')) ?? null;
  }
  // a Pi 5 runs only 64-bit kernels, also under a 32-bit userland; a Pi 4's 32-bit one is kernel7l
  const candidates = m.rp1 ? ['kernel_2712.img', 'kernel8.img']
    : base.arch === 'arm64' ? ['kernel8.img']
    : m.isa === 'armv6' ? ['kernel.img'] : m.firmware === 'videocore6' ? ['kernel7l.img', 'kernel8.img'] : ['kernel7.img'];
  return candidates.find((c) => names.has(c)) ?? null;
}

export interface ModelMatrix {
  boots: ModelId[];
  excluded: Array<{ model: ModelId; reason: string }>;
}

/** Every model, with why it is excluded (the first reason found) when it is. */
export function modelMatrix(bootFiles: string[], base: BaseFacts): ModelMatrix {
  const names = new Set(bootFiles.map((f) => f.replace(/^(::)?\//, '').replace(/\/$/, '')));
  const kernel = base.kind === 'debian' ? debianKernelVersion([...names]) : undefined;
  const out: ModelMatrix = { boots: [], excluded: [] };
  for (const m of MODELS) {
    const why = baseSupport(m.id, base, kernel);
    const dtb = m.dtbs.find((d) => names.has(d));
    const missingFw = FIRMWARE_FILES[m.firmware].filter((f) => !names.has(f));
    const kfile = kernelFor(m, base, names);
    let reason: string | undefined;
    if (why) reason = why.reason;
    else if (!dtb) reason = `no device tree for it on the boot partition (${m.dtbs.join(' or ')})`;
    else if (missingFw.length) reason = `its firmware is not on the boot partition (${missingFw.join(', ')})`;
    else if (!kfile) reason = 'no kernel for it on the boot partition';
    if (reason) out.excluded.push({ model: m.id, reason });
    else out.boots.push(m.id);
  }
  return out;
}

/** The models a config names that the image does not boot, each with why; empty when all are fine. */
export function missingTargets(targets: readonly ModelId[], matrix: ModelMatrix): Array<{ model: ModelId; reason: string }> {
  return targets.filter((t) => !matrix.boots.includes(t)).map((t) => matrix.excluded.find((e) => e.model === t)!);
}
