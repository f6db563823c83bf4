/**
 * Export a finished image into the output directory. Everything is written under hidden
 * temporary names in that same directory and renamed only when all of it is complete; the image
 * itself is renamed last, so a NAME.img is never there unless its sidecars are.
 */
import { existsSync, statSync } from 'node:fs';
import { rename, rm, writeFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Reporter } from '../util/report.js';
import { toolToFile } from '../util/tool.js';
import { createBmap } from '../bmap/create.js';
import { sha256File } from './base.js';

/**
 * The image carries the appliance's secrets (panel hash, Wi-Fi PSKs, a supplied TLS
 * key): the image and its compressed copy are readable by their owner only, from their creation.
 */
export const SECRET_FILE_MODE = 0o600;

export interface ExportResult {
  img: string;
  bmap: string;
  sha256: string;
  manifest: string;
  xz?: string;
  imageSha256: string;
  apparentBytes: number;
  mappedBytes: number;
  xzBytes?: number;
}

/** The hidden temporary name in `outDir` under which the image is built. */
export function partialName(outDir: string, name: string, suffix: string): string {
  return join(outDir, `.${name}.${suffix}.partial-${process.pid}`);
}

export async function exportImage(opts: {
  workImg: string;
  outDir: string;
  name: string;
  xz: boolean;
  manifest: Record<string, unknown>;
  reporter: Reporter;
  /** Temporary files registered here are removed if anything fails. */
  track: (path: string) => void;
}): Promise<ExportResult> {
  const { outDir, name, reporter } = opts;
  const final = {
    img: join(outDir, `${name}.img`),
    bmap: join(outDir, `${name}.bmap`),
    sha256: join(outDir, `${name}.sha256`),
    manifest: join(outDir, `${name}.manifest.json`),
    xz: join(outDir, `${name}.img.xz`),
  };
  const tmp = {
    bmap: partialName(outDir, name, 'bmap'),
    sha256: partialName(outDir, name, 'sha256'),
    manifest: partialName(outDir, name, 'manifest.json'),
    xz: partialName(outDir, name, 'img.xz'),
  };
  Object.values(tmp).forEach(opts.track);

  const size = (await stat(opts.workImg)).size;
  const bmap = await reporter.step('block map and checksum', (progress) =>
    createBmap(opts.workImg, { onProgress: (done, total) => progress({ done, total, unit: 'bytes' }) }),
  (b) => `${b.mappedBlocks} of ${b.blocksCount} blocks mapped`);
  const imageSha256 = bmap.imageSha256;
  await writeFile(tmp.bmap, bmap.xml);

  let xzSha: string | undefined;
  let xzBytes: number | undefined;
  if (opts.xz) {
    await reporter.step('compress (xz -T0)', async (progress) => {
      const timer = setInterval(() => existsSync(tmp.xz) && progress({ done: statSync(tmp.xz).size, unit: 'bytes' }), 1000);
      try {
        await toolToFile('xz', ['-T0', '-6', '-c', opts.workImg], tmp.xz, SECRET_FILE_MODE);
      } finally {
        clearInterval(timer);
      }
    });
    xzBytes = (await stat(tmp.xz)).size;
    xzSha = await sha256File(tmp.xz);
  }

  const sums = [`${imageSha256}  ${name}.img`];
  if (xzSha) sums.push(`${xzSha}  ${name}.img.xz`);
  await writeFile(tmp.sha256, sums.join('\n') + '\n');
  const mappedBytes = bmap.mappedBlocks * bmap.blockSize;
  const manifest = {
    ...opts.manifest,
    image: { file: `${name}.img`, sha256: imageSha256, apparentBytes: size, mappedBytes, ...(xzSha ? { xz: { file: `${name}.img.xz`, sha256: xzSha, bytes: xzBytes } } : {}) },
  };
  await writeFile(tmp.manifest, JSON.stringify(manifest, null, 2) + '\n');

  // stale outputs of an earlier build must not pair up with this build's files
  for (const f of Object.values(final)) await rm(f, { force: true });
  await rename(tmp.bmap, final.bmap);
  await rename(tmp.sha256, final.sha256);
  await rename(tmp.manifest, final.manifest);
  if (opts.xz) await rename(tmp.xz, final.xz);
  await rename(opts.workImg, final.img);
  return {
    img: final.img,
    bmap: final.bmap,
    sha256: final.sha256,
    manifest: final.manifest,
    ...(opts.xz ? { xz: final.xz, xzBytes } : {}),
    imageSha256,
    apparentBytes: size,
    mappedBytes,
  };
}
