/**
 * Read-only shares on the booted appliance: the laptop's file reaches the owner's folder, and the
 * mirror's unit (run now, as its timer runs it) gives the read-only copy the same file (one inode,
 * no second copy on the drive), which Syncthing serves as the send-only folder for the reader.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readonlyDir } from '../../../src/config/drive-layout.js';
import { rootUntil, SHARED_FOLDER, TEST_MOUNT, type Phase, type PhaseContext } from './context.js';

const until = (ctx: PhaseContext, what: string, script: string) => rootUntil(ctx, 'readers', what, script);

export const readers: Phase = {
  name: 'readers',
  async run(ctx) {
    const name = 'readers-phase.txt';
    const body = `for the friend ${Date.now()}\n`;
    const owner = `${TEST_MOUNT}/${SHARED_FOLDER}/${name}`;
    const copy = `${readonlyDir(TEST_MOUNT, SHARED_FOLDER)}/${name}`;
    assert.equal((await ctx.root('systemctl is-active syncpi-readonly.timer')).stdout.trim(), 'active');
    await until(ctx, 'the read-only folder to start', `test -d '${readonlyDir(TEST_MOUNT, SHARED_FOLDER)}/.stfolder'`);
    await writeFile(join(ctx.laptopFolder, name), body);
    await ctx.laptop.rest('POST', `/rest/db/scan?folder=${SHARED_FOLDER}`);
    await until(ctx, `${name} on the appliance`, `test -f '${owner}'`);
    const run = await ctx.root('systemctl start syncpi-readonly.service');
    assert.equal(run.code, 0, `the mirror's unit ran: ${run.stderr}`);
    assert.equal((await ctx.root(`cat '${copy}'`)).stdout, body);
    const ids = (await ctx.root(`stat -c %d:%i '${owner}' '${copy}'`)).stdout.trim().split('\n');
    assert.equal(ids.length, 2);
    assert.equal(ids[0], ids[1], 'the copy is the folder\'s file under a second name');
  },
};
