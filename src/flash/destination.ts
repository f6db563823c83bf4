/**
 * Where an image goes: a whole block device or (with --to-file) a regular file. It is resolved
 * and checked once (`resolveDestination`), confirmed by the caller, then opened and probed once
 * (`openDestination`): the writer and the verifier ask the Destination what it can do instead of
 * looking at the path again.
 *
 * Opening a block device for writing holds it exclusively (O_EXCL) and then re-checks that the
 * handle names the device that was checked and confirmed: a /dev/sdX name passes to another disk
 * when a card is swapped between the check, the prompt and the open.
 */
import { constants } from 'node:fs';
import { lstat, open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { Failure, UserError } from '../util/errors.js';
import {
  allDevices,
  assessDevice,
  describe,
  identityChange,
  listDevices,
  loopBackingFile,
  majMin,
  type AssessOptions,
  type BlockDevice,
  type ImageFacts,
} from './devices.js';
import { openDirect, type DirectIo } from './direct.js';

export type DestinationKind = 'block-device' | 'file';

/** A destination that passed every check, not opened yet. */
export type ResolvedDestination =
  | { kind: 'block-device'; path: string; device: BlockDevice; label: string; identity: string }
  | { kind: 'file'; path: string; device?: undefined; label: string; identity: string };

/** What an opened destination can do, probed when it was opened. */
export interface Capabilities {
  /** Transfers bypass the page cache (O_DIRECT): a read right after a write comes from the medium. */
  directIo: boolean;
  /** Its cached pages can be written back and dropped (BLKFLSBUF), so a later read hits the medium. */
  dropCache: boolean;
  /** It is a medium a person removes: power it off when done (not a loop device or a file). */
  eject: boolean;
}

export interface Destination {
  readonly kind: DestinationKind;
  readonly path: string;
  /** The lsblk node that was checked and confirmed (block devices only). */
  readonly device?: BlockDevice;
  readonly label: string;
  /** Identity of the medium for the state record: serial, model and size, or the file's path. */
  readonly identity: string;
  /** "major:minor" of the device the handle holds (block devices only). */
  readonly majMin?: string;
  /** Bytes it holds: the device's size, or the size the file was given. */
  readonly size: number;
  readonly can: Capabilities;
  /** The handle every ordinary transfer goes through (exclusive on a block device opened to write). */
  readonly fh: FileHandle;
  /** A second handle for direct transfers, present exactly when `can.directIo`. */
  readonly direct?: DirectIo;
  close(): Promise<void>;
}

export interface ResolveOptions extends AssessOptions {
  toFile?: boolean;
  /** Only reading: a mounted device may be checked. */
  readOnly?: boolean;
}

function identityOf(dev: BlockDevice | undefined, path: string): string {
  return dev ? [dev.serial, dev.model, dev.size].join(':') : `file:${path}`;
}

/** Find the lsblk node for a device path given by the user (following /dev/disk/by-id links). */
async function findDevice(devices: BlockDevice[], given: string): Promise<BlockDevice | undefined> {
  const real = await realpath(given).catch(() => given);
  return allDevices(devices).find((d) => d.path === real || d.path === given);
}

/**
 * Turn what the user named (or, without a name, what `choose` picks from the devices) into a
 * destination that may be written, or refuse with a UserError saying why. A regular file only
 * with --to-file, never the image itself and never through a symbolic link.
 */
export async function resolveDestination(
  given: string | undefined,
  image: ImageFacts,
  opts: ResolveOptions,
  choose: (devices: BlockDevice[]) => Promise<string>,
): Promise<ResolvedDestination> {
  const st = given ? await stat(given).catch(() => undefined) : undefined;
  if (given && (!st || !st.isBlockDevice())) {
    if (st && !st.isFile()) throw new UserError(`${given} is neither a block device nor a regular file`);
    if (!opts.toFile) {
      throw new UserError(st ? `${given} is a regular file, not a device: pass --to-file to write the image into it` : `${given} does not exist: give a device such as /dev/sdX (see \`syncpi flash --list\`), or --to-file to create a file`);
    }
    if ((await lstat(given).catch(() => undefined))?.isSymbolicLink()) {
      throw new UserError(`${given} is a symbolic link: --to-file writes only to the file named, never through a link`);
    }
    if (st && (await realpath(given)) === image.realPath) throw new UserError(`${given} is the image itself`);
    return { kind: 'file', path: given, label: given, identity: identityOf(undefined, given) };
  }
  const devices = await listDevices();
  const named = given ?? (await choose(devices));
  const dev = await findDevice(devices, named);
  if (!dev) throw new UserError(`${named} is not a block device lsblk knows (see \`syncpi flash --list\`)`);
  const refusal = assessDevice(dev, image, { ...opts, unmount: opts.unmount || opts.readOnly }, loopBackingFile(dev));
  if (refusal && !(opts.readOnly && refusal.code === 'mounted')) throw new UserError(refusal.message);
  return { kind: 'block-device', path: dev.path, device: dev, label: describe(dev), identity: identityOf(dev, dev.path) };
}

async function openBlockDevice(path: string, write: boolean): Promise<FileHandle> {
  try {
    // O_EXCL on a block device: fails with EBUSY while anything has it mounted or open exclusively
    return await open(path, write ? constants.O_RDWR | constants.O_EXCL : constants.O_RDONLY);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'EBUSY') throw new UserError(`${path} is in use (mounted or opened by another program): close it and try again`);
    if (code === 'EACCES' || code === 'EPERM') throw new UserError(`no permission to ${write ? 'write' : 'read'} ${path}: run as root (e.g. with sudo)`);
    if (code === 'EROFS') throw new UserError(`${path} is read-only`);
    throw new Failure(`cannot open ${path}: ${(e as Error).message}`);
  }
}

/**
 * Open a resolved destination and probe what it can do. `write`: a block device is held
 * exclusively; a file is created if missing and given `fileSize` bytes (holes read back as
 * zeros, so it becomes a sparse copy of the image). Reading only (--verify-only) leaves it shared.
 */
export async function openDestination(dest: ResolvedDestination, opts: { write: boolean; fileSize: number }): Promise<Destination> {
  if (dest.kind === 'file') {
    if (!opts.write) {
      const fh = await open(dest.path, 'r');
      return { ...dest, size: (await fh.stat()).size, can: { directIo: false, dropCache: false, eject: false }, fh, close: () => fh.close() };
    }
    // O_NOFOLLOW: a link planted after the check is refused by the kernel, not followed
    const fh = await open(dest.path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ELOOP') throw new UserError(`${dest.path} is a symbolic link: --to-file writes only to the file named, never through a link`);
      throw e;
    });
    if (!(await fh.stat()).isFile()) {
      await fh.close();
      throw new UserError(`${dest.path} is neither a block device nor a regular file`);
    }
    await fh.truncate(opts.fileSize);
    // a file is written through the page cache: its read-back is a second pass (verify.ts)
    return { ...dest, size: opts.fileSize, can: { directIo: false, dropCache: false, eject: false }, fh, close: () => fh.close() };
  }

  const fh = await openBlockDevice(dest.path, opts.write);
  let direct: DirectIo | undefined;
  try {
    // from here on what the handle names can no longer change: check it is what was confirmed
    const opened = majMin((await fh.stat({ bigint: true })).rdev);
    const change = identityChange(dest.device, opened, allDevices(await listDevices()).find((d) => d.majMin === opened));
    if (change) throw new UserError(`${dest.path} is no longer the device that was checked (${change}): nothing was written; run the command again`);
    // only a write reads back chunk by chunk; --verify-only reads once, after dropping the cache
    direct = opts.write ? await openDirect(dest.path, 'rw') : undefined;
    const held = direct;
    return {
      ...dest,
      majMin: opened,
      size: dest.device.size,
      can: { directIo: !!held, dropCache: true, eject: dest.device.type !== 'loop' },
      fh,
      direct: held,
      close: async () => {
        await held?.close().catch(() => undefined);
        await fh.close();
      },
    };
  } catch (e) {
    await direct?.close().catch(() => undefined);
    await fh.close();
    throw e;
  }
}

/** The opened destination in the terms `--json` reports it. */
export function describeDestination(d: Destination): { kind: DestinationKind; path: string; size: number; identity: string; majMin?: string; can: Capabilities } {
  return { kind: d.kind, path: d.path, size: d.size, identity: d.identity, ...(d.majMin ? { majMin: d.majMin } : {}), can: d.can };
}
