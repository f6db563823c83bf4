/**
 * The real appliance (image/appliance.yaml, image/fleet.yaml) adapted to the test hosts, with as
 * few changes as the hosts force, each explained, and the real CLI to run against them.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import YAML from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A filesystem label no test host has: the drive is configured but absent. */
export const ABSENT_LABEL = 'SYNCPI-ABSENT';

export interface ApplianceOptions {
  /** Public key file the config's user logs in with. */
  pubKey: string;
  /** 'absent': the drive section points at a label no host has; 'none': no drive section. */
  drive: 'absent' | 'none';
}

/** image/appliance.yaml as data, changed only where the test hosts need it. */
export function testAppliance(o: ApplianceOptions): Record<string, unknown> {
  const c = YAML.parse(readFileSync(path.join(root, 'image/appliance.yaml'), 'utf8')) as Record<string, any>;
  c.system.user.ssh_keys = [{ file: o.pubKey }];
  // The hosts run bookworm, whose Syncthing (1.19) has known GUI flaws: syncpi refuses a panel
  // beyond loopback on it, so the panel is tunnel-only (status reaches it through SSH anyway).
  c.panel.tunnel_only = true;
  c.panel.allowed_networks = [];
  if (o.drive === 'absent') c.drive.label = ABSENT_LABEL;
  else {
    delete c.drive;
    // The example's service reports the drive's usage: it needs a drive.
    delete c.services;
  }
  return c;
}

export async function writeYaml(file: string, data: unknown): Promise<string> {
  await writeFile(file, YAML.stringify(data));
  return file;
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run `syncpi ARGS` through the real entry point. */
export async function syncpi(args: string[], o: { timeoutMs?: number; env?: Record<string, string | undefined> } = {}): Promise<CliResult> {
  const t0 = Date.now();
  const r = await execa(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args], {
    cwd: root,
    reject: false,
    timeout: o.timeoutMs ?? 240_000,
    env: { NO_COLOR: '1', ...o.env },
  });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

/** The last `{"type":"result",…}` event of a --json run. */
export function jsonResult<T = any>(stdout: string): T {
  const lines = stdout.split('\n').filter((l) => l.startsWith('{'));
  for (let i = lines.length - 1; i >= 0; i--) {
    const ev = JSON.parse(lines[i]!) as { type?: string; data?: T };
    if (ev.type === 'result') return ev.data as T;
  }
  throw new Error(`no result event in the output:\n${stdout.slice(-2000)}`);
}
