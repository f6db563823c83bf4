/** `syncpi build CONFIG --out DIR [--xz] [--json]`: a ready-to-flash SD image from appliance.yaml. */
import type { Command } from 'commander';
import { isAbsolute, resolve } from 'node:path';
import { createReporter, formatBytes, formatDuration } from '../util/report.js';

interface BuildFlags {
  out: string;
  xz?: boolean;
  json?: boolean;
  secrets?: string;
  cache?: boolean;
}

export function register(program: Command): void {
  program
    .command('build')
    .description('build a customized, ready-to-boot SD image from CONFIG')
    .argument('<config>', 'appliance.yaml')
    .requiredOption('-o, --out <dir>', 'directory to write NAME.img, NAME.bmap, NAME.sha256 and NAME.manifest.json into')
    .option('--xz', 'also write NAME.img.xz (multithreaded)')
    .option('--json', 'print progress and the result as JSON lines')
    .option('--secrets <file>', 'secrets file (default: beside the config)')
    .option('--no-cache', 'rebuild the base layer even when a cached one matches')
    .action(async (configPath: string, flags: BuildFlags) => {
      const reporter = createReporter({ json: !!flags.json });
      // loaded lazily: the image pipeline pulls in far more than `syncpi --help` needs
      const { planFromFile } = await import('../plan/load.js');
      const { buildImage } = await import('../image/build.js');
      const { plan, loaded } = planFromFile(configPath, flags.secrets ? { secretsFile: flags.secrets } : {});
      if (plan.base.kind === 'image' && plan.base.source && !/^https?:\/\//i.test(plan.base.source) && !isAbsolute(plan.base.source)) {
        plan.base.source = resolve(loaded.dir, plan.base.source);
      }
      const r = await buildImage({ plan, outDir: flags.out, xz: !!flags.xz, reporter, noCache: flags.cache === false });
      const summary = {
        image: r.img,
        bmap: r.bmap,
        sha256: r.sha256,
        manifest: r.manifest,
        ...(r.xz ? { xz: r.xz, xzBytes: r.xzBytes } : {}),
        imageSha256: r.imageSha256,
        apparentBytes: r.apparentBytes,
        mappedBytes: r.mappedBytes,
        layer: r.layer,
        diskId: r.diskId,
        totalMs: r.totalMs,
      };
      if (reporter.json) {
        reporter.result(summary);
        return;
      }
      reporter.info(
        [
          `image:    ${r.img} (${formatBytes(r.apparentBytes)}, ${formatBytes(r.mappedBytes)} mapped)`,
          `bmap:     ${r.bmap}`,
          `checksum: ${r.sha256}`,
          `manifest: ${r.manifest}`,
          ...(r.xz ? [`xz:       ${r.xz} (${formatBytes(r.xzBytes ?? 0)})`] : []),
          `${r.layer.base ? `base layer ${r.layer.base.reused ? 'reused from cache' : 'built'}, ` : ''}packages layer ${r.layer.reused ? 'reused from cache' : 'built'}; total ${formatDuration(r.totalMs)}`,
          `flash it with: syncpi flash ${r.img}`,
        ].join('\n'),
      );
    });
}
