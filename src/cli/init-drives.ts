/**
 * The drives `syncpi init` offers: file systems on this machine's block devices that an appliance
 * can mount, so a person plugs the drive in and picks it instead of typing its label or UUID.
 * Discovery is flash's (lsblk); every disk holding the running system is left out.
 */
import { DRIVE_FS } from '../config/schema.js';
import { canonicalFsUuid, checkFsLabel, checkUuidForFs, checkUuidOrFsId, FS_LABEL_MAX } from '../config/validators.js';
import { type BlockDevice, isSystemMount, listDevices, walk } from '../flash/devices.js';
import { formatBytes } from '../util/report.js';
import { run } from '../util/run.js';

export interface DriveChoice {
  path: string;
  fs: (typeof DRIVE_FS)[number];
  /** How the config names it: the UUID when the file system has one, else its label. */
  uuid?: string;
  label?: string;
  /** One line for the menu: device, label, file system, size, bus. */
  title: string;
}

export function driveChoices(disks: BlockDevice[]): DriveChoice[] {
  const out: DriveChoice[] = [];
  for (const disk of disks) {
    const nodes = [...walk(disk)];
    if (nodes.some((n) => n.mountpoints.some(isSystemMount))) continue;
    for (const n of nodes) {
      const fs = (DRIVE_FS as readonly string[]).includes(n.fstype) ? (n.fstype as DriveChoice['fs']) : undefined;
      if (!fs) continue;
      const uuid = n.uuid && !checkUuidOrFsId(n.uuid) && !checkUuidForFs(canonicalFsUuid(n.uuid), fs) ? canonicalFsUuid(n.uuid) : undefined;
      const label = n.label && !checkFsLabel(n.label) && n.label.length <= FS_LABEL_MAX[fs]! ? n.label : undefined;
      if (!uuid && !label) continue;
      const title = [n.path, n.label ? `"${n.label}"` : '(no label)', fs, formatBytes(n.size), disk.tran || (disk.type === 'loop' ? 'loop' : '')].filter(Boolean).join('  ');
      out.push({ path: n.path, fs, ...(uuid ? { uuid } : { label: label! }), title });
    }
  }
  return out;
}

/**
 * lsblk takes file system facts from udev's database; where no udev has probed a device (a
 * container, a drive attached a moment ago) they are empty, so those nodes are probed directly.
 * A probe that fails (no permission, no medium) leaves the node as it was.
 */
async function fillFromBlkid(disks: BlockDevice[]): Promise<void> {
  const missing = disks.flatMap((d) => [...walk(d)]).filter((n) => !n.fstype && n.size > 0 && n.children.length === 0).slice(0, 64);
  await Promise.all(missing.map(async (n) => {
    try {
      const { stdout } = await run('blkid', ['-p', '-o', 'export', n.path]);
      const kv = new Map(stdout.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
      n.fstype = kv.get('TYPE') ?? '';
      n.label = kv.get('LABEL') ?? '';
      n.uuid = kv.get('UUID') ?? '';
    } catch {
      // not readable here: not offered
    }
  }));
}

/** The drives to offer; empty when lsblk is missing or fails (the wizard then asks for a label). */
export async function findDrives(): Promise<DriveChoice[]> {
  try {
    const disks = await listDevices();
    await fillFromBlkid(disks);
    return driveChoices(disks);
  } catch {
    return [];
  }
}
