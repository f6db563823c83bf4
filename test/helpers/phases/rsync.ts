/**
 * rsync into the drive on the booted appliance: the write-only key withAllFeatures declares
 * uploads a file through the forwarded SSH port with a real rsync, the file lands in the camera
 * folder on the drive, and the same key cannot list the folder.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { RSYNC_PHASE_KEY } from '../appliance-image.js';
import type { Phase } from './context.js';

export const rsyncPhase: Phase = {
  name: 'rsync',
  async run(ctx) {
    const key = join(ctx.dir, RSYNC_PHASE_KEY);
    const ssh = `ssh -p ${ctx.vm.ports.ssh} -i ${key} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=${join(ctx.dir, 'known_hosts')} -o StrictHostKeyChecking=yes`;
    const file = join(ctx.dir, 'rsync-phase-upload.txt');
    await writeFile(file, `uploaded by rsync ${Date.now()}\n`);
    const up = await execa('rsync', ['-a', '-e', ssh, file, 'syncpi-rsync@127.0.0.1:'], { reject: false, timeout: 120_000 });
    assert.equal(up.exitCode, 0, `upload: ${up.stderr}`);
    const onDrive = await ctx.root('findmnt -n -o TARGET -T /srv/sync/camera/rsync-phase-upload.txt | sort -u && stat -c "%U %G" /srv/sync/camera/rsync-phase-upload.txt && cat /srv/sync/camera/rsync-phase-upload.txt');
    assert.equal(onDrive.code, 0, onDrive.stderr);
    const [mount, owner, content] = onDrive.stdout.trim().split('\n');
    assert.equal(mount, '/srv/sync', 'the file is on the drive');
    assert.equal(owner, 'syncpi-rsync syncpi-upload');
    assert.match(content ?? '', /^uploaded by rsync \d+$/);
    const list = await execa('rsync', ['-e', ssh, 'syncpi-rsync@127.0.0.1:'], { reject: false, timeout: 60_000 });
    assert.notEqual(list.exitCode, 0, 'a write-only key cannot list');
    assert.match(list.stderr, /reading from write-only server is not allowed/);
    assert.doesNotMatch(list.stdout, /rsync-phase-upload/);
  },
};
