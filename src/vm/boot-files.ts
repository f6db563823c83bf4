/**
 * The kernel, initramfs and command line of a Raspberry Pi–layout image, read straight from its
 * FAT boot partition with mtools: no loop device, no mount, and the image is only ever read.
 * The Pi firmware's own rules pick the files (config.txt `kernel=` and `initramfs`), so what QEMU
 * boots is what the Pi would boot.
 */
import { join } from 'node:path';
import { MTOOLS_ENV, tool } from '../util/tool.js';
import { Failure, UserError } from '../util/errors.js';

const SECTOR = 512;

export interface BootFiles {
  kernel: string;
  initrd?: string;
  /** cmdline.txt as written in the image. */
  cmdline: string;
  /** PARTUUID-style disk identifier of the image (8 hex digits). */
  diskId: string;
  /** The device tree asked for, copied from the boot partition. */
  dtb?: string;
}


interface DosTable {
  diskId: string;
  partitions: Array<{ start: number; size: number; type: string }>;
}

export async function readPartitionTable(img: string): Promise<DosTable> {
  let json: { partitiontable: { label: string; id?: string; partitions?: Array<{ start: number; size: number; type: string }> } };
  try {
    json = JSON.parse(await tool('sfdisk', ['--json', img]));
  } catch (e) {
    if (e instanceof Failure && e.message.startsWith('sfdisk not found')) throw e;
    throw new UserError(`${img}: no partition table found (expected a Raspberry Pi SD image)`);
  }
  const t = json.partitiontable;
  if (t.label !== 'dos') throw new UserError(`${img}: expected an MBR (dos) partition table like a Raspberry Pi image, found ${t.label}`);
  return { diskId: (t.id ?? '').replace(/^0x/i, '').toLowerCase().padStart(8, '0'), partitions: t.partitions ?? [] };
}

/** The firmware's choice of kernel and initramfs from config.txt (last assignment wins, as on the Pi). */
export function pickBootFiles(configTxt: string, names: string[]): { kernel?: string; initrd?: string } {
  let kernel: string | undefined;
  let initrd: string | undefined;
  let autoInitramfs = false;
  for (const raw of configTxt.split('\n')) {
    const l = raw.replace(/#.*/, '').trim();
    if (!l || l.startsWith('[')) continue;
    let m = /^kernel\s*=\s*(\S+)$/.exec(l);
    if (m) kernel = m[1];
    m = /^initramfs\s+(\S+)/.exec(l);
    if (m) initrd = m[1];
    if (/^auto_initramfs\s*=\s*1$/.test(l)) autoInitramfs = true;
  }
  const has = (n: string): boolean => names.includes(n);
  // Raspberry Pi OS: kernel8.img (64-bit) with its matching initramfs8 when auto_initramfs=1
  if (!kernel && has('kernel8.img')) kernel = 'kernel8.img';
  if (!initrd && autoInitramfs && kernel === 'kernel8.img' && has('initramfs8')) initrd = 'initramfs8';
  if (!kernel) kernel = names.filter((n) => n.startsWith('vmlinuz')).sort().pop();
  if (!initrd && kernel?.startsWith('vmlinuz-')) {
    const guess = `initrd.img-${kernel.slice('vmlinuz-'.length)}`;
    if (has(guess)) initrd = guess;
  }
  return { kernel, initrd };
}

/** Copy the boot files out of IMG into DIR, and the device tree DTB when one is named. */
export async function extractBootFiles(img: string, dir: string, dtbName?: string): Promise<BootFiles> {
  const table = await readPartitionTable(img);
  const boot = table.partitions[0];
  if (!boot || !/^(c|b|e|ef)$/i.test(boot.type)) throw new UserError(`${img}: the first partition is not a FAT boot partition (type ${boot?.type ?? 'none'})`);
  const fat = `${img}@@${boot.start * SECTOR}`;
  const names = (await tool('mdir', ['-b', '-i', fat, '::/'], { env: MTOOLS_ENV }))
    .split('\n')
    .map((l) => l.trim().replace(/^::\//, ''))
    .filter(Boolean);
  const read = async (name: string): Promise<string> => (has(name) ? tool('mtype', ['-i', fat, `::/${name}`], { env: MTOOLS_ENV }) : '');
  const has = (n: string): boolean => names.includes(n);
  const configTxt = await read('config.txt');
  const cmdline = (await read('cmdline.txt')).split('\n').find((l) => l.trim())?.trim() ?? '';
  if (!cmdline) throw new UserError(`${img}: no cmdline.txt on the boot partition`);
  const pick = pickBootFiles(configTxt, names);
  if (!pick.kernel || !has(pick.kernel)) {
    throw new UserError(`${img}: no kernel on the boot partition (config.txt names ${pick.kernel ?? 'none'}; found: ${names.slice(0, 12).join(' ')})`);
  }
  const kernel = join(dir, 'kernel');
  await tool('mcopy', ['-n', '-i', fat, `::/${pick.kernel}`, kernel], { env: MTOOLS_ENV });
  let initrd: string | undefined;
  if (pick.initrd && has(pick.initrd)) {
    initrd = join(dir, 'initrd');
    await tool('mcopy', ['-n', '-i', fat, `::/${pick.initrd}`, initrd], { env: MTOOLS_ENV });
  }
  let dtb: string | undefined;
  if (dtbName) {
    if (!has(dtbName)) {
      throw new UserError(`${img}: no ${dtbName} on the boot partition (device trees found: ${names.filter((n) => n.endsWith('.dtb')).join(' ') || 'none'})`);
    }
    dtb = join(dir, dtbName);
    await tool('mcopy', ['-n', '-i', fat, `::/${dtbName}`, dtb], { env: MTOOLS_ENV });
  }
  return { kernel, ...(initrd ? { initrd } : {}), cmdline, diskId: table.diskId, ...(dtb ? { dtb } : {}) };
}

/**
 * The Pi's command line made to fit the emulated machine: its consoles are replaced by EXTRA
 * (`-M virt`: the PL011 UART QEMU logs, ttyAMA0); root=, rootfstype and the rest stay, since
 * the PARTUUID is the card's own on a virtio disk and on the emulated SD alike.
 */
export function adaptCmdline(cmdline: string, extra: string[] = ['console=ttyAMA0,115200']): string {
  const words = cmdline
    .split(/\s+/)
    .filter(Boolean)
    .filter((w) => !/^(console|kgdboc|splash|quiet|plymouth\.\S*)(=|$)/.test(w));
  return [...words, ...extra, 'panic=-1'].join(' ');
}
