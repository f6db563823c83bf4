/**
 * Versions on the always-on peer: a file the laptop deletes is gone from the appliance's folder
 * and kept, with its content, in the folder's versions directory on the drive (staggered
 * versioning, the default, which the test appliance leaves as it is).
 */
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { versionsDir } from '../../../src/config/drive-layout.js';
import { rootUntil, SHARED_FOLDER, TEST_MOUNT, type Phase, type PhaseContext } from './context.js';

const until = (ctx: PhaseContext, what: string, script: string) => rootUntil(ctx, 'versions', what, script);

export const versions: Phase = {
  name: 'versions',
  async run(ctx) {
    const name = 'versions-phase.txt';
    const body = `kept after deletion ${Date.now()}\n`;
    const onPi = `${TEST_MOUNT}/${SHARED_FOLDER}/${name}`;
    const kept = versionsDir(TEST_MOUNT, SHARED_FOLDER);
    await writeFile(join(ctx.laptopFolder, name), body);
    await ctx.laptop.rest('POST', `/rest/db/scan?folder=${SHARED_FOLDER}`);
    assert.equal(await until(ctx, `${name} on the appliance`, `cat '${onPi}'`), body);

    await rm(join(ctx.laptopFolder, name));
    await ctx.laptop.rest('POST', `/rest/db/scan?folder=${SHARED_FOLDER}`);
    await until(ctx, `${name} to leave the appliance's folder`, `test ! -e '${onPi}'`);
    // Staggered versioning names a version NAME~YYYYMMDD-HHMMSS.EXT beside where the file was.
    const found = await until(ctx, `a version of ${name} in ${kept}`, `find '${kept}' -maxdepth 1 -type f -name 'versions-phase~*.txt' | grep .`);
    const version = found.trim().split('\n')[0]!;
    assert.match(version, /\/versions-phase~\d{8}-\d{6}\.txt$/);
    assert.equal((await ctx.root(`cat '${version}'`)).stdout, body, 'the version holds the deleted content');
    assert.equal((await ctx.root(`stat -c %U '${version}'`)).stdout.trim(), 'syncthing');
    // on the drive, never on the SD card
    assert.equal((await ctx.root(`stat -c %d '${kept}' '${TEST_MOUNT}' | uniq | wc -l`)).stdout.trim(), '1', `${kept} is on the drive mounted at ${TEST_MOUNT}`);
    // the drive's automount and the drive itself are both mounted there: one target either way
    assert.equal((await ctx.root(`findmnt -n -o TARGET -T '${kept}' | sort -u`)).stdout.trim(), TEST_MOUNT);
  },
};
