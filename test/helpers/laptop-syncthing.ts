/**
 * A Syncthing on this machine playing the user's laptop: its own --home in a temp dir, GUI/REST on
 * a free loopback port, no discovery, relays or NAT traversal (it dials the appliance at the
 * address it is given). Private from its first start: the options are written into config.xml
 * after `generate` and checked there before `serve` runs. Stopped by PID.
 */
import { execa, type ResultPromise } from 'execa';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { freePort } from '../../src/vm/qemu.js';
import { STRACE_NET } from './net-trace.js';

export interface Laptop {
  id: string;
  home: string;
  apiKey: string;
  guiPort: number;
  pid: number;
  rest<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  stop(): Promise<void>;
}

/** What a test Syncthing must say in config.xml before it first starts. */
export const PRIVATE_OPTIONS: Record<string, string> = {
  globalAnnounceEnabled: 'false',
  localAnnounceEnabled: 'false',
  relaysEnabled: 'false',
  natEnabled: 'false',
  urAccepted: '-1',
  crashReportingEnabled: 'false',
  autoUpgradeIntervalH: '0',
  stunKeepaliveStartS: '0',
  startBrowser: 'false',
  listenAddress: 'tcp://127.0.0.1:0',
};

const optionRe = (name: string): RegExp => new RegExp(`^[ \\t]*<${name}>[^<]*</${name}>\\n`, 'gm');

/** config.xml with every private option set (each element once) and the GUI on ADDRESS with APIKEY. */
export function privateConfigXml(xml: string, gui: { address: string; apiKey: string }): string {
  const open = xml.indexOf('<options>');
  const close = xml.indexOf('</options>');
  if (open < 0 || close < open) throw new Error('config.xml has no <options> element');
  let options = xml.slice(open + '<options>'.length, close);
  for (const name of Object.keys(PRIVATE_OPTIONS)) options = options.replace(optionRe(name), '');
  options += Object.entries(PRIVATE_OPTIONS).map(([k, v]) => `        <${k}>${v}</${k}>\n`).join('') + '    ';
  let out = xml.slice(0, open + '<options>'.length) + options + xml.slice(close);
  out = out.replace(/(<gui\b[^>]*>[\s\S]*?<address>)[^<]*(<\/address>)/, `$1${gui.address}$2`);
  out = out.replace(/(<gui\b[^>]*>[\s\S]*?)<apikey>[^<]*<\/apikey>/, `$1<apikey>${gui.apiKey}</apikey>`);
  return out;
}

/** The private options config.xml does not hold as required, as "name: value" (empty when private). */
export function privacyProblems(xml: string): string[] {
  const options = /<options>([\s\S]*?)<\/options>/.exec(xml)?.[1] ?? '';
  const problems: string[] = [];
  for (const [k, want] of Object.entries(PRIVATE_OPTIONS)) {
    const got = [...options.matchAll(new RegExp(`<${k}>([^<]*)</${k}>`, 'g'))].map((m) => m[1]);
    if (got.length !== 1 || got[0] !== want) problems.push(`${k}: ${got.length ? got.join(', ') : 'absent'} (want ${want})`);
  }
  return problems;
}

/** A fresh Syncthing home made by the real binary (no daemon started); returns its device ID. */
export async function generateHome(home: string): Promise<string> {
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

export interface LaptopOptions {
  /** Run Syncthing under `strace -f` of its network calls, written to this file. */
  traceFile?: string;
  /** Replace the generated config.xml (its keys and device ID stay) before it is made private. */
  configXml?: string;
}

export async function startLaptop(dir: string, opts: LaptopOptions = {}): Promise<Laptop> {
  const home = join(dir, 'laptop-home');
  const id = await generateHome(home);
  const apiKey = randomBytes(16).toString('hex');
  const guiPort = await freePort();
  const cfg = join(home, 'config.xml');
  await writeFile(cfg, privateConfigXml(opts.configXml ?? (await readFile(cfg, 'utf8')), { address: `127.0.0.1:${guiPort}`, apiKey }));
  const problems = privacyProblems(await readFile(cfg, 'utf8'));
  if (problems.length) throw new Error(`laptop syncthing would start non-private (${cfg}): ${problems.join('; ')}`);
  const serve = ['serve', `--home=${home}`, '--no-browser', '--no-restart', '--no-upgrade', '--logflags=0'];
  const [cmd, ...args] = opts.traceFile ? ['strace', ...STRACE_NET, '-o', opts.traceFile, 'syncthing', ...serve] : ['syncthing', ...serve];
  const child: ResultPromise = execa(cmd!, args, { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', reject: false, env: { STNODEFAULTFOLDER: '1', STNOUPGRADE: '1' }, cleanup: true });
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

  // Under strace the process to signal is strace's child: strace detaches from, but does not end,
  // a tracee when it is itself signalled.
  const syncthingPid = (): number | undefined => {
    if (!opts.traceFile || child.pid === undefined) return child.pid;
    const kids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    return kids.length ? Number(kids[0]) : undefined;
  };
  const signal = (pid: number | undefined, sig: NodeJS.Signals): void => {
    try {
      if (pid !== undefined) process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  };
  const stop = async (): Promise<void> => {
    if (exited || child.pid === undefined) return;
    const pid = syncthingPid();
    signal(pid, 'SIGTERM');
    const t = setTimeout(() => {
      signal(pid, 'SIGKILL');
      child.kill('SIGKILL');
    }, 5000);
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
  return { id, home, apiKey, guiPort, pid: syncthingPid()!, rest, stop };
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
