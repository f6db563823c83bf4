/**
 * `syncpi flash`: choose a device safely, write only the image's mapped blocks, read them back
 * from the medium, add per-card settings, eject. Each phase is its own reported step; the state
 * record (state.ts) and the held-back partition table (write.ts) make sure an interrupted run is
 * never mistaken for a finished card.
 */
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { access, realpath, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../util/run.js';
import { withCleanup } from '../util/cleanup.js';
import { Failure, UserError } from '../util/errors.js';
import { formatBytes, type Reporter } from '../util/report.js';
import { assessDevice, describe, listDevices, majMin, loopBackingFile, mountpointsOf, type BlockDevice, type ImageFacts } from './devices.js';
import { describeDestination, openDestination, resolveDestination, type Destination } from './destination.js';
import { findBootPartition, loadCardSettings, summarize, writeSettings, type CardSettings, type CardSettingsInput } from './settings.js';
import { imageSize, openSource, planWrite, type WritePlan } from './source.js';
import { lastRecord, record, type FlashRecord } from './state.js';
import { ChecksumVerificationError } from './mismatch.js';
import { mismatchError, verifyRanges, type Mismatch } from './verify.js';
import { directFor, writeImage } from './write.js';
import { limitDirtyCache } from './tune.js';

export interface FlashOptions extends CardSettingsInput {
  image: string;
  device?: string;
  yes?: boolean;
  allowFixed?: boolean;
  unmount?: boolean;
  toFile?: boolean;
  verify?: boolean;
  verifyOnly?: boolean;
  eject?: boolean;
}

/** How the command talks to a person; absent without a terminal. */
export interface Prompter {
  pick(message: string, choices: Array<{ name: string; value: string }>): Promise<string>;
  confirm(message: string): Promise<boolean>;
}

export interface FlashResult {
  image: string;
  device: string;
  imageSize: number;
  mappedBytes: number;
  map: WritePlan['mapSource'];
  verified: boolean;
  /** What the destination turned out to be and could do, as probed when it was opened. */
  destination: ReturnType<typeof describeDestination>;
  settings?: string;
  ejected: boolean;
}

async function imageFacts(path: string, size: number): Promise<ImageFacts> {
  const st = await stat(path, { bigint: true });
  let hostSource: string | undefined;
  try {
    const out = (await run('findmnt', ['-n', '-o', 'SOURCE', '--target', path])).stdout.trim();
    if (out.startsWith('/dev/')) hostSource = await realpath(out).catch(() => out);
  } catch {
    // findmnt is optional: the device number alone still identifies the host in most cases
  }
  return { size, hostMajMin: majMin(st.dev), hostSource, realPath: await realpath(path) };
}

/**
 * A test's hook: when the environment names a file in VAR, pause until that file exists,
 * announcing the pause with FILE.ready. Lets a test change the world at a chosen moment: the
 * card between the write and its read-back, or the disk behind /dev/X before it is opened.
 */
function testGate(variable: string): (() => Promise<void>) | undefined {
  const gate = process.env[variable];
  if (!gate) return undefined;
  return async () => {
    writeFileSync(`${gate}.ready`, '');
    for (let i = 0; i < 6000 && !existsSync(gate); i++) await sleep(100);
  };
}

/** Pause before reading back the byte at SYNCPI_FLASH_GATE_OFFSET (default 0). */
function verifyGate(): { offset: number; wait: () => Promise<void> } | undefined {
  const wait = testGate('SYNCPI_FLASH_GATE_BEFORE_VERIFY');
  return wait && { offset: Number(process.env.SYNCPI_FLASH_GATE_OFFSET ?? 0), wait };
}

async function preflightSettings(image: string, size: number, settings: CardSettings): Promise<void> {
  const readAt = async (offset: number, length: number): Promise<Buffer> => {
    const src = await openSource(image, size);
    try {
      const buf = Buffer.alloc(length);
      await src.read(buf, offset, Math.min(length, size - offset));
      return buf;
    } finally {
      await src.close();
    }
  };
  if (!(await findBootPartition(readAt))) {
    throw new UserError(`${image} has no FAT boot partition, so per-card settings (${summarize(settings)}) cannot be stored on it`);
  }
}

async function chooseDevice(opts: FlashOptions, devices: BlockDevice[], facts: ImageFacts, prompter: Prompter | undefined): Promise<string> {
  const assessed = devices.map((d) => ({ d, refusal: assessDevice(d, facts, opts, loopBackingFile(d)) }));
  const candidates = assessed.filter((a) => !a.refusal);
  if (!prompter) {
    throw new UserError('no --device given and no terminal to choose one on: pass --device /dev/… (and --yes to skip the confirmation); `syncpi flash --list` shows the devices');
  }
  if (candidates.length === 0) {
    throw new UserError(
      `no device can take this image (${formatBytes(facts.size)}): insert an SD card, or name one with --device`,
      assessed.map((a) => `  ${a.refusal!.message}`),
    );
  }
  return prompter.pick(
    'Which device should be overwritten?',
    candidates.map(({ d }) => ({ name: describe(d), value: d.path })),
  );
}

/** The devices and what would happen to each, for `--list`. */
export async function listForImage(image: string | undefined, opts: FlashOptions): Promise<Array<{ device: BlockDevice; refusal?: string }>> {
  const size = image ? await imageSize(image) : 0;
  const facts = image ? await imageFacts(image, size) : { size };
  return (await listDevices()).map((d) => ({ device: d, refusal: assessDevice(d, facts, opts, loopBackingFile(d))?.message }));
}

async function unmountAll(dev: BlockDevice, reporter: Reporter): Promise<void> {
  for (const mp of mountpointsOf(dev)) {
    try {
      await run('umount', [mp]);
      reporter.info(`unmounted ${mp}`);
    } catch (e) {
      throw new Failure(`cannot unmount ${mp}: ${(e as { stderr?: string }).stderr?.trim() || String(e)}`);
    }
  }
}

async function eject(dest: Destination, reporter: Reporter): Promise<boolean> {
  if (!dest.can.eject) {
    if (dest.device?.type === 'loop') reporter.info(`${dest.path} is a loop device: nothing to eject`);
    return false;
  }
  for (const [cmd, args] of [
    ['udisksctl', ['power-off', '-b', dest.path]],
    ['eject', [dest.path]],
  ] as const) {
    try {
      await run(cmd, [...args]);
      reporter.info(`ejected ${dest.path}: you can remove the card`);
      return true;
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOENT') {
        reporter.warn(`${cmd} could not eject ${dest.path}: ${(e as { stderr?: string }).stderr?.trim().split('\n')[0] || String(e)}`);
      }
    }
  }
  reporter.info(`could not eject ${dest.path} (neither udisksctl nor eject worked): the data is synced, you can remove the card`);
  return false;
}

export async function flash(opts: FlashOptions, reporter: Reporter, prompter: Prompter | undefined): Promise<FlashResult> {
  const image = opts.image;
  try {
    await access(image);
  } catch {
    throw new UserError(`image ${image} not found (give the .img or .img.xz that \`syncpi build\` wrote)`);
  }
  if (!(await stat(image)).isFile()) throw new UserError(`${image} is not a file: give the .img or .img.xz that \`syncpi build\` wrote`);
  const size = await imageSize(image);
  const plan = await planWrite(image, size);
  const settings = opts.verifyOnly ? undefined : await loadCardSettings(opts);
  if (settings) await preflightSettings(image, size, settings);
  const facts = await imageFacts(image, size);

  // the device: named, or chosen from the candidates; a regular file only with --to-file
  const resolved = await resolveDestination(opts.device, facts, { ...opts, readOnly: opts.verifyOnly }, (devices) => chooseDevice(opts, devices, facts, prompter));
  const devPath = resolved.path;
  if (resolved.device && !opts.verifyOnly) {
    if (!opts.yes) {
      if (!prompter) throw new UserError(`refusing to overwrite ${resolved.label} without confirmation: no terminal to ask on; pass --yes to confirm`);
      const ok = await prompter.confirm(`Erase everything on ${resolved.label} and write ${image}?`);
      if (!ok) throw new UserError('cancelled: nothing was written');
    }
    if (mountpointsOf(resolved.device).length) await unmountAll(resolved.device, reporter);
  }

  const previous = lastRecord(devPath);
  if (previous?.status === 'writing' && previous.identity === resolved.identity) {
    reporter.warn(`the previous write to ${devPath} (of ${previous.image}, started ${previous.startedAt}) was interrupted: that card is incomplete`);
  }
  reporter.info(
    `${image}: ${formatBytes(size)}, ${formatBytes(plan.mappedBytes)} to ${opts.verifyOnly ? 'verify' : 'write'} (${plan.mapSource === 'bmap' ? `bmap ${plan.bmapPath}` : plan.mapSource === 'sparse' ? 'data ranges of the sparse file' : 'whole image: no bmap beside it'})`,
  );

  if (opts.verifyOnly) {
    const dest = await openDestination(resolved, { write: false, fileSize: size });
    try {
      return await verifyOnly(image, plan, dest, reporter, previous);
    } finally {
      await dest.close();
    }
  }

  return withCleanup(async (scope) => {
    await testGate('SYNCPI_FLASH_GATE_BEFORE_OPEN')?.();
    const dest = await openDestination(resolved, { write: true, fileSize: size });
    let finished = false;
    scope.defer('close the destination', async () => {
      await dest.close().catch(() => undefined);
      if (!finished) process.stderr.write(`${devPath} is incomplete: the write did not finish (the card has no partition table); flash it again\n`);
    });
    if (dest.majMin) {
      const restore = limitDirtyCache(dest.majMin);
      scope.defer('restore dirty-cache limit', restore);
    }
    const rec: FlashRecord = { device: devPath, identity: dest.identity, image, status: 'writing', startedAt: new Date().toISOString(), updatedAt: '' };
    record(rec);

    const wantVerify = opts.verify !== false;
    const gate = wantVerify ? verifyGate() : undefined;
    /** Record the failure, then raise it: the card has no partition table (write.ts). */
    const failed = (e: unknown): never => {
      if (e instanceof ChecksumVerificationError) {
        record({ ...rec, status: 'failed', detail: e.subject === 'image' ? 'image does not match its bmap' : `mismatch at byte ${e.offset}` });
      }
      throw e;
    };
    const located = (m: Mismatch): Promise<ChecksumVerificationError> =>
      mismatchError(dest, plan, image, m, {
        medium: (offset) => `verification failed: ${devPath} differs from the image at byte offset ${offset} (0x${offset.toString(16)}); the card is faulty or was changed while writing — try another card`,
        imageSuffix: ` (${devPath} has no partition table)`,
      });

    // Where the destination takes direct I/O, each chunk is read back right after it is written: one pass does both.
    const inline = wantVerify && !!directFor(dest, plan);
    const written = await reporter.step(inline ? `write and verify ${resolved.label}` : `write ${resolved.label}`, async (progress) => {
      // the pool's buffers are aligned for direct I/O exactly when the destination does direct I/O
      const source = await openSource(image, size, { direct: dest.can.directIo });
      try {
        const r = await writeImage(source, plan, dest, { verify: wantVerify, gate }, (done) => progress({ done, total: plan.mappedBytes, unit: 'bytes' }));
        if (r.mismatch) throw await located(r.mismatch);
        return r;
      } catch (e) {
        return failed(e);
      } finally {
        await source.close();
      }
    }, (r) => (r.verified ? `${formatBytes(r.bytes)} written, read back from the medium and matched (${plan.ranges.length} ranges)` : `${formatBytes(r.bytes)} written and synced`));
    record({ ...rec, status: 'written' });

    let verified = written.verified;
    if (wantVerify && !verified) {
      // no direct I/O here (a regular file, or a device that refuses it): a second pass, from the medium
      await gate?.wait();
      await reporter.step(`verify ${resolved.label}`, async (progress) => {
        const bad = await verifyRanges(dest, plan, written.digests, (done) => progress({ done, total: plan.mappedBytes, unit: 'bytes' }));
        if (bad) failed(await located(bad));
      }, () => `${plan.ranges.length} ranges match (read from the medium)`);
      verified = true;
    }

    let settingsSummary: string | undefined;
    if (settings) {
      settingsSummary = summarize(settings);
      await reporter.step('per-card settings', async () => {
        const boot = await findBootPartition(async (offset, length) => {
          const buf = Buffer.alloc(length);
          await dest.fh.read(buf, 0, length, offset);
          return buf;
        });
        if (!boot) throw new Failure(`no FAT boot partition found on ${devPath} after writing`);
        await dest.fh.sync();
        const format = await writeSettings(devPath, boot.start, settings);
        await dest.fh.sync();
        if (format === 'cloud-init') settingsSummary += ' (as cloud-init user-data/network-config)';
        if (format === 'firstrun') settingsSummary += ' (as firstrun.sh)';
      }, () => settingsSummary!);
    }

    await dest.fh.sync();
    await dest.close();
    finished = true;
    record({ ...rec, status: verified ? 'verified' : 'written' });
    const ejected = opts.eject === false ? false : await eject(dest, reporter);
    const result: FlashResult = { image, device: devPath, imageSize: size, mappedBytes: plan.mappedBytes, map: plan.mapSource, verified, destination: describeDestination(dest), settings: settingsSummary, ejected };
    const host = settings?.hostname ? `${settings.hostname}.local` : 'its hostname from appliance.yaml (HOSTNAME.local)';
    reporter.info(
      dest.kind === 'block-device'
        ? `Next: put the card into the Raspberry Pi and power it on; after the first boot (a few minutes) it answers as ${host}, over SSH and on its panel.`
        : `Next: ${devPath} holds the image; flash it to a card or boot it with QEMU.`,
    );
    if (reporter.json) reporter.result(result);
    return result;
  });
}

async function verifyOnly(image: string, plan: WritePlan, dest: Destination, reporter: Reporter, previous: FlashRecord | undefined): Promise<FlashResult> {
  let digests = plan.ranges.map((r) => r.sha256 ?? '');
  if (digests.some((d) => !d)) {
    // no bmap: the image's own ranges are hashed first
    digests = await reporter.step(`hash ${image}`, async (progress) => {
      const src = await openSource(image, plan.imageSize);
      const buf = Buffer.allocUnsafe(4 << 20);
      const out: string[] = [];
      let done = 0;
      try {
        for (const r of plan.ranges) {
          const h = createHash('sha256');
          const end = Math.min((r.last + 1) * plan.blockSize, plan.imageSize);
          for (let pos = r.first * plan.blockSize; pos < end; pos += buf.length) {
            const n = Math.min(buf.length, end - pos);
            await src.read(buf, pos, n);
            h.update(buf.subarray(0, n));
            done += n;
            progress({ done, total: plan.mappedBytes, unit: 'bytes' });
          }
          out.push(h.digest('hex'));
        }
      } finally {
        await src.close();
      }
      return out;
    });
  }
  await reporter.step(`verify ${dest.label}`, async (progress) => {
    const bad = await verifyRanges(dest, plan, digests, (done) => progress({ done, total: plan.mappedBytes, unit: 'bytes' }));
    if (bad) {
      const why = previous?.status === 'writing' ? ' (the last write to it was interrupted)' : '';
      throw await mismatchError(dest, plan, image, bad, {
        medium: (offset) => `${dest.path} does not hold ${image}${why}: first difference at byte offset ${offset} (0x${offset.toString(16)})`,
      });
    }
  });
  const result: FlashResult = { image, device: dest.path, imageSize: plan.imageSize, mappedBytes: plan.mappedBytes, map: plan.mapSource, verified: true, destination: describeDestination(dest), ejected: false };
  if (reporter.json) reporter.result(result);
  return result;
}
