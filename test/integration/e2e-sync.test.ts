/**
 * End to end: the user's laptop (Syncthing on this machine, its own home in a temp dir) and the
 * appliance (the default image, booted in QEMU with a virtual drive) are paired through
 * configuration only — the laptop's device ID goes into appliance.yaml before the build, the
 * appliance's ID is read over SSH and given to the laptop with the forwarded sync port as its
 * address — and a file put in the laptop's folder arrives on the appliance's drive.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildTestAppliance, makeTestKey, writeTestConfig, type TestAppliance } from '../helpers/appliance-image.js';
import { pairWith, startLaptop, type Laptop } from '../helpers/laptop-syncthing.js';
import { withCleanup } from '../../src/util/cleanup.js';
import { bootVm, makeDriveImage } from '../../src/vm/qemu.js';
import { SshTarget } from '../../src/targets/ssh.js';
import { DEVICE_ID_SCRIPT, parseDeviceId } from '../../src/cli/share.js';
import { shJoin } from '../../src/util/shell.js';

let dir: string;
let laptop: Laptop | undefined;
let app: TestAppliance;

before(async () => {
  for (const tool of ['qemu-system-aarch64', 'qemu-img', 'mcopy', 'mke2fs', 'syncthing', 'ssh-keygen']) {
    const r = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
    assert.equal(r.exitCode, 0, `${tool} is missing: install qemu-system-arm, qemu-utils, mtools, e2fsprogs, syncthing, openssh-client`);
  }
  dir = await mkdtemp(join(tmpdir(), 'syncpi-e2e-'));
  laptop = await startLaptop(dir);
  const key = await makeTestKey(dir);
  const laptopId = laptop.id;
  const config = await writeTestConfig(dir, key, (doc) => {
    doc.setIn(['sync', 'devices'], [{ id: laptopId, name: 'laptop', addresses: ['dynamic'] }]);
    doc.setIn(['sync', 'folders'], [{ id: 'documents', label: 'Documents', path: 'documents', type: 'sendreceive', devices: ['laptop'] }]);
  });
  app = await buildTestAppliance(dir, config, key);
});

after(async () => {
  await laptop?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a file put on the laptop arrives on the appliance drive', { timeout: 20 * 60_000 }, async () => {
  await withCleanup(async (scope) => {
    const drive = join(dir, 'drive.img');
    await makeDriveImage(drive, 'SYNCDRIVE');
    const vm = await bootVm(scope, { image: app.img, workDir: dir, drive, bootTimeoutMs: 300_000 });
    const ssh = await SshTarget.connect({ host: '127.0.0.1', port: vm.ports.ssh!, user: 'pi', identities: [app.key], knownHostsFile: join(dir, 'known_hosts'), acceptNewHostKey: true, connectTimeoutMs: 60_000 });
    scope.defer('ssh', () => ssh.close());
    const root = (script: string) => ssh.exec(shJoin(['sudo', '-n', 'sh', '-c', script]));

    const active = await root('for i in $(seq 1 90); do systemctl is-active --quiet syncthing.service && exit 0; sleep 2; done; systemctl status --no-pager syncthing.service; exit 1');
    assert.equal(active.code, 0, `syncthing.service did not become active:\n${active.stdout}`);
    const idOut = await root(DEVICE_ID_SCRIPT);
    const applianceId = parseDeviceId(idOut.stdout);
    assert.ok(applianceId, `no device ID from the appliance: ${idOut.stdout} ${idOut.stderr}`);

    const folder = join(dir, 'laptop-documents');
    await pairWith(laptop!, { id: applianceId, address: `tcp://127.0.0.1:${vm.ports.sync}` }, { id: 'documents', path: folder });
    const body = `written on the laptop at ${new Date().toISOString()}\n`;
    await writeFile(join(folder, 'hello.txt'), body);
    await laptop!.rest('POST', '/rest/db/scan?folder=documents');

    const t0 = Date.now();
    let got = '';
    while (Date.now() - t0 < 240_000) {
      const r = await root('cat /srv/sync/documents/hello.txt 2>/dev/null');
      if (r.code === 0) {
        got = r.stdout;
        break;
      }
      await new Promise((res) => setTimeout(res, 2000));
    }
    const conns = JSON.stringify(await laptop!.rest('GET', '/rest/system/connections').catch((e: unknown) => String(e))).slice(0, 600);
    assert.equal(got, body, `hello.txt did not arrive on the appliance within 240 s; laptop connections: ${conns}`);
    process.stderr.write(`boot to SSH ${Math.round(vm.bootMs / 1000)} s; file arrived ${Math.round((Date.now() - t0) / 1000)} s after it was written; build ${Math.round(app.buildMs / 1000)} s\n`);
    const owner = await root('stat -c %U /srv/sync/documents/hello.txt');
    assert.equal(owner.stdout.trim(), 'syncthing');
  });
});
