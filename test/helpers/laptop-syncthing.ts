/**
 * A Syncthing on this machine playing the user's laptop: its own --home in a temp dir, GUI/REST on
 * a free loopback port, no discovery, relays or NAT traversal (it dials the appliance at the
 * address it is given). Stopped by PID.
 */
import { execa, type ResultPromise } from 'execa';
import { mkdir, readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { freePort } from '../../src/vm/qemu.js';

export interface Laptop {
  id: string;
  home: string;
  apiKey: string;
  guiPort: number;
  pid: number;
  rest<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  stop(): Promise<void>;
}

async function generate(home: string): Promise<string> {
  await mkdir(home, { recursive: true });
  try {
    const r = await execa('syncthing', ['generate', `--home=${home}`, '--no-default-folder'], { stdin: 'ignore', all: true });
    const m = /Device ID: ([A-Z2-7-]{63})/.exec(r.all ?? '');
    if (m) return m[1]!;
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') throw new Error('syncthing not found on this machine: install the Debian package "syncthing"');
    throw e;
  }
  const { stdout } = await execa('syncthing', ['serve', `--home=${home}`, '--device-id'], { stdin: 'ignore' });
  return stdout.trim();
}

export async function startLaptop(dir: string): Promise<Laptop> {
  const home = join(dir, 'laptop-home');
  const id = await generate(home);
  const apiKey = randomBytes(16).toString('hex');
  const guiPort = await freePort();
  const child: ResultPromise = execa(
    'syncthing',
    ['serve', `--home=${home}`, '--no-browser', '--no-restart', '--no-upgrade', `--gui-address=127.0.0.1:${guiPort}`, `--gui-apikey=${apiKey}`, '--logflags=0'],
    { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', reject: false, env: { STNODEFAULTFOLDER: '1', STNOUPGRADE: '1' }, cleanup: true },
  );
  const log: string[] = [];
  child.stdout?.on('data', (d: Buffer) => log.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => log.push(d.toString()));
  let exited = false;
  void child.then(() => (exited = true));

  const rest = async <T,>(method: string, path: string, body?: unknown): Promise<T> => {
    const r = await fetch(`http://127.0.0.1:${guiPort}${path}`, {
      method,
      headers: { 'X-API-Key': apiKey, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`laptop syncthing ${method} ${path}: ${r.status} ${text.slice(0, 300)}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };

  const stop = async (): Promise<void> => {
    if (exited || child.pid === undefined) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await child;
    clearTimeout(t);
  };

  // bounded wait for the REST API
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`laptop syncthing exited: ${log.join('').slice(-800)}`);
    try {
      await rest('GET', '/rest/system/ping');
      break;
    } catch (e) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`laptop syncthing REST did not answer within 60 s: ${String(e)}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  // private, like the appliance: it reaches the appliance only at the address it is given
  await rest('PATCH', '/rest/config/options', {
    globalAnnounceEnabled: false,
    localAnnounceEnabled: false,
    relaysEnabled: false,
    natEnabled: false,
    urAccepted: -1,
    autoUpgradeIntervalH: 0,
    listenAddresses: ['tcp://127.0.0.1:0'],
  });
  return { id, home, apiKey, guiPort, pid: child.pid!, rest, stop };
}

/** Add the appliance at ADDRESS and share folder FOLDERID (at PATH here) with it. */
export async function pairWith(l: Laptop, appliance: { id: string; address: string }, folder: { id: string; path: string }): Promise<void> {
  await mkdir(folder.path, { recursive: true });
  await l.rest('PUT', `/rest/config/devices/${appliance.id}`, { deviceID: appliance.id, name: 'appliance', addresses: [appliance.address], compression: 'metadata' });
  await l.rest('PUT', `/rest/config/folders/${folder.id}`, {
    id: folder.id,
    label: folder.id,
    path: folder.path,
    type: 'sendreceive',
    rescanIntervalS: 5,
    fsWatcherEnabled: false,
    devices: [{ deviceID: l.id }, { deviceID: appliance.id }],
  });
}

export async function laptopLog(l: Laptop): Promise<string> {
  return readFile(join(l.home, 'syncthing.log'), 'utf8').catch(() => '');
}
