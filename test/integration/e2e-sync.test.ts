/**
 * End to end: the user's laptop (Syncthing on this machine, its own home in a temp dir) and the
 * appliance (the test image: the default one with every optional feature on, booted in QEMU with a virtual drive) are paired through
 * configuration only — the laptop's device ID goes into appliance.yaml before the build, the
 * appliance's ID is read over SSH and given to the laptop with the forwarded sync port as its
 * address — and a file put in the laptop's folder arrives on the appliance's drive.
 *
 * Then the drive fails and is replaced by a blank one with the same label: the appliance boots,
 * connects and scans, the folder is held back (journal and `syncpi status` say why) and the
 * laptop keeps its file; after `syncpi adopt-drive` the new drive fills again from the laptop.
 *
 * Each optional feature's checks run as a phase in the first boot (test/helpers/phases/).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildTestAppliance, makeTestKey, withReader, writeTestConfig, type TestAppliance } from '../helpers/appliance-image.js';
import { pairWith, startLaptop, type Laptop } from '../helpers/laptop-syncthing.js';
import { withCleanup } from '../../src/util/cleanup.js';
import { DEFAULT_FORWARDS, bootVm, makeDriveImage } from '../../src/vm/qemu.js';
import { PHASES } from '../helpers/phases/index.js';
import { SshConnection } from '../../src/targets/ssh-connection.js';
import { DEVICE_ID_SCRIPT, parseDeviceId } from '../../src/cli/share.js';
import { shJoin } from '../../src/util/shell.js';
import { hostStatus } from '../../src/fleet/status.js';
import { planFromFile } from '../../src/plan/load.js';

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
    // camera stays, with no device: the rsync phase's backup key writes into it
    doc.setIn(['sync', 'folders'], [
      { id: 'documents', label: 'Documents', path: 'documents', type: 'sendreceive', devices: ['laptop'] },
      { id: 'camera', label: 'Phone camera', path: 'camera', type: 'receiveonly', devices: [] },
    ]);
    // the readers phase: documents shared read-only with a device that never connects
    withReader(doc);
  });
  app = await buildTestAppliance(dir, config, key);
});

after(async () => {
  await laptop?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((res) => setTimeout(res, 2000));
  }
  throw new Error(`${what}: not within ${Math.round(ms / 1000)} s`);
}

test('a file put on the laptop arrives on the appliance drive, and survives the drive being replaced by a blank one', { timeout: 30 * 60_000 }, async () => {
  const folder = join(dir, 'laptop-documents');
  const body = `written on the laptop at ${new Date().toISOString()}\n`;
  let applianceId = '';
  let overlay = '';
  const bootAndLogin = async (scope: Parameters<Parameters<typeof withCleanup>[0]>[0], name: string, drive: string) => {
    const forwards = [...DEFAULT_FORWARDS, ...PHASES.flatMap((p) => p.forwards ?? [])];
    const vm = await bootVm(scope, { image: app.img, workDir: dir, drive, name, forwards, bootTimeoutMs: 300_000, ...(overlay ? { overlay } : {}) });
    overlay = vm.overlay;
    const ssh = await SshConnection.connect({ host: '127.0.0.1', port: vm.ports.ssh!, user: 'pi', identities: [app.key], knownHostsFile: join(dir, 'known_hosts'), acceptNewHostKey: true, connectTimeoutMs: 60_000 });
    scope.defer(`ssh:${name}`, () => ssh.close());
    const root = (script: string) => ssh.exec(shJoin(['sudo', '-n', 'sh', '-c', script]));
    return { vm, ssh, root };
  };
  const poweroff = async (vm: Awaited<ReturnType<typeof bootVm>>, root: (s: string) => Promise<unknown>) => {
    await root('systemctl poweroff').catch(() => undefined);
    if (!(await vm.exited(120_000))) await vm.stop();
  };
  const laptopHas = async (): Promise<string> => readFile(join(folder, 'hello.txt'), 'utf8').catch(() => '<gone>');

  await withCleanup(async (scope) => {
    const drive = join(dir, 'drive.img');
    await makeDriveImage(drive, 'SYNCDRIVE');
    const { vm, ssh, root } = await bootAndLogin(scope, 'first', drive);

    const active = await root('for i in $(seq 1 90); do systemctl is-active --quiet syncthing.service && exit 0; sleep 2; done; systemctl status --no-pager syncthing.service; exit 1');
    assert.equal(active.code, 0, `syncthing.service did not become active:\n${active.stdout}`);
    const idOut = await root(DEVICE_ID_SCRIPT);
    applianceId = parseDeviceId(idOut.stdout) ?? '';
    assert.ok(applianceId, `no device ID from the appliance: ${idOut.stdout} ${idOut.stderr}`);

    await pairWith(laptop!, { id: applianceId, address: `tcp://127.0.0.1:${vm.ports.sync}` }, { id: 'documents', path: folder });
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
    for (const phase of PHASES) {
      const tp = Date.now();
      await phase.run({ vm, ssh, root, laptop: laptop!, laptopFolder: folder, applianceId, app, dir });
      process.stderr.write(`phase ${phase.name}: ${Math.round((Date.now() - tp) / 1000)} s\n`);
    }
    await poweroff(vm, root);
  });

  // the drive fails; a new, blank one with the same label goes in
  await withCleanup(async (scope) => {
    const blank = join(dir, 'drive-new.img');
    await makeDriveImage(blank, 'SYNCDRIVE');
    const { vm, ssh, root } = await bootAndLogin(scope, 'new-drive', blank);
    await laptop!.rest('PATCH', `/rest/config/devices/${applianceId}`, { addresses: [`tcp://127.0.0.1:${vm.ports.sync}`] });
    await until('syncthing.service active on the new drive', 180_000, async () => ((await root('systemctl is-active syncthing.service')).stdout.trim() === 'active' ? true : undefined));
    await until('the laptop connected to the appliance', 180_000, async () => {
      const c = await laptop!.rest<{ connections: Record<string, { connected: boolean }> }>('GET', '/rest/system/connections');
      return c.connections[applianceId]?.connected ? true : undefined;
    });
    // both sides scan (the laptop every 5 s) and exchange indexes; a deletion would travel now
    await new Promise((res) => setTimeout(res, 45_000));
    await laptop!.rest('POST', '/rest/db/scan?folder=documents');
    await new Promise((res) => setTimeout(res, 15_000));
    assert.equal(await laptopHas(), body, 'the laptop still has its file after the appliance booted on a blank drive');

    const holds = await root('cat /run/syncpi/folder-holds');
    assert.match(holds.stdout, /^documents\t\/srv\/sync\/documents\t.*replaced, blank or reformatted drive/m);
    const journal = await root('journalctl -b --no-pager -o cat -u syncthing.service');
    assert.match(journal.stdout, /folder documents \(\/srv\/sync\/documents\) is held back: it was seeded on file system uuid:/);
    assert.equal((await root('test -e /srv/sync/documents; echo $?')).stdout.trim(), '1', 'nothing was created on the blank drive');

    const { loaded } = planFromFile(app.config, { secretsFile: join(dir, 'appliance.secrets.yaml') });
    const st = await hostStatus({ name: 'vm', address: '127.0.0.1', port: vm.ports.ssh!, user: 'pi' }, loaded.config, { identities: [app.key], knownHostsFile: join(dir, 'known_hosts') });
    const f = st.folders.find((x) => x.id === 'documents');
    assert.equal(st.ok, false, 'status needs attention');
    assert.match(f?.held ?? '', /replaced, blank or reformatted drive.*syncpi adopt-drive/, JSON.stringify(st));

    // on purpose: adopt the new drive; it fills from the laptop and nothing is deleted
    ssh.close();
    const adopt = await execa(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'adopt-drive', `pi@127.0.0.1`, '-p', String(vm.ports.ssh), '-i', app.key, '--known-hosts', join(dir, 'known_hosts'), '--yes'],
      { reject: false, stdin: 'ignore', timeout: 180_000 },
    );
    assert.equal(adopt.exitCode, 0, `${adopt.stdout}\n${adopt.stderr}`);
    assert.match(adopt.stdout, /index was reset/);
    const ssh2 = await SshConnection.connect({ host: '127.0.0.1', port: vm.ports.ssh!, user: 'pi', identities: [app.key], knownHostsFile: join(dir, 'known_hosts'), connectTimeoutMs: 60_000 });
    scope.defer('ssh:adopted', () => ssh2.close());
    const root2 = (script: string) => ssh2.exec(shJoin(['sudo', '-n', 'sh', '-c', script]));
    const refilled = await until('hello.txt back on the adopted drive', 300_000, async () => {
      const r = await root2('cat /srv/sync/documents/hello.txt');
      return r.code === 0 ? r.stdout : undefined;
    });
    assert.equal(refilled, body);
    assert.equal(await laptopHas(), body, 'the laptop still has its file after the adoption');
    assert.equal((await root2('cat /run/syncpi/folder-holds')).stdout.trim(), '', 'no folder held back any more');
  });
});
