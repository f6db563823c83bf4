/**
 * Versions on the always-on peer: a file the laptop deletes is gone from the appliance's folder
 * and kept, with its content, in the folder's versions directory on the drive (staggered
 * versioning, the default, which the test appliance leaves as it is).
 */
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { versionsDir } from '../../../src/config/drive-layout.js';
import type { Phase, PhaseContext } from './context.js';

/** The test appliance's drive mount and the folder e2e-sync shares with the laptop. */
const MOUNT = '/srv/sync';
const FOLDER = 'documents';

async function until(ctx: PhaseContext, what: string, script: string, ms = 180_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await ctx.root(script);
    if (r.code === 0) return r.stdout;
    if (Date.now() > deadline) throw new Error(`versions phase: timed out after ${ms / 1000} s waiting for ${what}: ${r.stdout}${r.stderr}`);
    await new Promise((res) => setTimeout(res, 2000));
  }
}

export const versions: Phase = {
  name: 'versions',
  async run(ctx) {
    const name = 'versions-phase.txt';
    const body = `kept after deletion ${Date.now()}\n`;
    const onPi = `${MOUNT}/${FOLDER}/${name}`;
    const kept = versionsDir(MOUNT, FOLDER);
    await writeFile(join(ctx.laptopFolder, name), body);
    await ctx.laptop.rest('POST', `/rest/db/scan?folder=${FOLDER}`);
    assert.equal(await until(ctx, `${name} on the appliance`, `cat '${onPi}'`), body);

    await rm(join(ctx.laptopFolder, name));
    await ctx.laptop.rest('POST', `/rest/db/scan?folder=${FOLDER}`);
    await until(ctx, `${name} to leave the appliance's folder`, `test ! -e '${onPi}'`);
    // Staggered versioning names a version NAME~YYYYMMDD-HHMMSS.EXT beside where the file was.
    const found = await until(ctx, `a version of ${name} in ${kept}`, `find '${kept}' -maxdepth 1 -type f -name 'versions-phase~*.txt' | grep .`);
    const version = found.trim().split('\n')[0]!;
    assert.match(version, /\/versions-phase~\d{8}-\d{6}\.txt$/);
    assert.equal((await ctx.root(`cat '${version}'`)).stdout, body, 'the version holds the deleted content');
    assert.equal((await ctx.root(`stat -c %U '${version}'`)).stdout.trim(), 'syncthing');
    // on the drive, never on the SD card
    assert.equal((await ctx.root(`stat -c %d '${kept}' '${MOUNT}' | uniq | wc -l`)).stdout.trim(), '1', `${kept} is on the drive mounted at ${MOUNT}`);
    // the drive's automount and the drive itself are both mounted there: one target either way
    assert.equal((await ctx.root(`findmnt -n -o TARGET -T '${kept}' | sort -u`)).stdout.trim(), MOUNT);
  },
};
