/**
 * access.web on the booted appliance, through the forwarded port (QEMU's gateway address, inside
 * the allowed networks): the server asks for credentials, lists and serves the file the laptop
 * synced into `documents`, refuses a write to the read-only share, and Chromium's rendering of
 * the listing names the file (screenshot kept with the test artifacts).
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { browse, curl } from '../web-client.js';
import type { Phase } from './context.js';

/** The test appliance's share: access.web with its default listen address (see withAllFeatures). */
const GUEST_PORT = 8443;

export const webdav: Phase = {
  name: 'webdav',
  forwards: [{ name: 'webdav', guestPort: GUEST_PORT }],
  async run(ctx) {
    const active = await ctx.root('for i in $(seq 1 60); do systemctl is-active --quiet syncpi-web.service && exit 0; sleep 2; done; systemctl status --no-pager syncpi-web.service; journalctl -b -u syncpi-web.service --no-pager | tail -n 30; exit 1');
    assert.equal(active.code, 0, `syncpi-web.service did not become active:\n${active.stdout}`);
    // active is not listening yet (Type=simple), and QEMU's forward accepts before the guest does
    const listening = await ctx.root(`for i in $(seq 1 60); do ss -Hltn 'sport = :${GUEST_PORT}' | grep -q . && exit 0; sleep 1; done; journalctl -b -u syncpi-web.service --no-pager | tail -n 30; exit 1`);
    assert.equal(listening.code, 0, `nothing listens on ${GUEST_PORT}:\n${listening.stdout}`);
    const panel = ctx.app.panel;
    assert.ok(panel, 'the test appliance has a panel password in its secrets file');
    const base = `https://127.0.0.1:${ctx.vm.ports.webdav}`;
    const auth = ['-u', `${panel.user}:${panel.password}`];
    const body = await readFile(join(ctx.laptopFolder, 'hello.txt'), 'utf8');

    assert.equal(curl([`${base}/documents/`]).status, 401, 'no credentials');
    assert.equal(curl(['-u', `${panel.user}:not-the-password`, `${base}/documents/`]).status, 401, 'wrong password');
    const list = curl([...auth, '-X', 'PROPFIND', '-H', 'Depth: 1', `${base}/documents/`]);
    assert.equal(list.status, 207, list.body);
    assert.match(list.body, /<D:href>\/documents\/hello\.txt<\/D:href>/, 'PROPFIND lists the synced file');
    const got = curl([...auth, `${base}/documents/hello.txt`]);
    assert.equal(got.status, 200);
    assert.equal(got.body, body, 'GET returns what the laptop wrote');

    const upload = join(ctx.dir, 'webdav-upload.txt');
    await writeFile(upload, 'must not arrive\n');
    const put = curl([...auth, '-T', upload, `${base}/documents/uploaded.txt`]);
    assert.ok([403, 404, 405].includes(put.status), `PUT on the read-only share answered ${put.status}`);
    assert.equal((await ctx.root('test -e /srv/sync/documents/uploaded.txt; echo $?')).stdout.trim(), '1', 'nothing was written to the drive');
    assert.equal(curl([...auth, '-X', 'DELETE', `${base}/documents/hello.txt`]).status, 405);
    assert.equal((await ctx.root('cat /srv/sync/documents/hello.txt')).stdout, body, 'the file is still on the drive');

    const page = browse(join(ctx.dir, 'chromium'), `https://${encodeURIComponent(panel.user)}:${encodeURIComponent(panel.password)}@127.0.0.1:${ctx.vm.ports.webdav}/documents/`, 'webdav-phase-listing');
    assert.match(page.dom, /hello\.txt/, 'the listing page in Chromium names the file');
    process.stderr.write(`webdav phase: listing screenshot ${page.screenshot}\n`);
  },
};
