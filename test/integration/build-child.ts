/**
 * Runs one image build in its own process (so a test can interrupt it):
 *   node --import tsx build-child.ts PLAN.json OUTDIR [--no-cache]
 * JSON progress events on stdout; XDG_CACHE_HOME chooses the cache.
 */
import { readFileSync } from 'node:fs';
import { buildImage } from '../../src/image/build.js';
import { createReporter } from '../../src/util/report.js';
import type { Plan } from '../../src/plan/types.js';

const [planPath, outDir, flag] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(planPath!, 'utf8')) as Plan;
const reporter = createReporter({ json: true });
buildImage({ plan, outDir: outDir!, reporter, noCache: flag === '--no-cache' }).then(
  (r) => reporter.result({ img: r.img, reused: r.layer.reused }),
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    for (const d of (e as { details?: string[] }).details ?? []) process.stderr.write(`  ${d}\n`);
    // not process.exit: after Ctrl-C the cleanup handler is still releasing mounts and exits 130
    process.exitCode = 1;
  },
);
