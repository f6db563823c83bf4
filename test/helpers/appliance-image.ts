/**
 * The test appliance: the default one (image/appliance.yaml) with every optional feature switched
 * on (withAllFeatures), a key the test holds and its own secrets file, optionally edited further
 * (e.g. a laptop's device ID). Every booted-image test builds from this one shape, so they share
 * one cached base layer: after the first cold build each is a config-only rebuild.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { planFromFile } from '../../src/plan/load.js';
import type { Plan } from '../../src/plan/types.js';
import { buildImage } from '../../src/image/build.js';
import { createReporter } from '../../src/util/report.js';
import { panelCredentials } from '../../src/cli/verify.js';

export interface TestAppliance {
  img: string;
  config: string;
  plan: Plan;
  key: string;
  panel: { user: string; password: string } | null;
  buildMs: number;
}

export async function makeTestKey(dir: string): Promise<string> {
  const key = join(dir, 'id_ed25519');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'syncpi-test', '-f', key], { stdin: 'ignore' });
  return key;
}

type ConfigDoc = ReturnType<typeof parseDocument>;

/**
 * What the default appliance leaves off, switched on, with the packages those features install
 * named here too: the layer key is the package list, so it must not depend on which features a
 * test reads.
 */
export const ALL_FEATURE_PACKAGES = ['rclone', 'python3', 'curl'];

/** The value at PATH as plain data, whether it was parsed (a YAML node) or set from plain data. */
function plainIn<T>(doc: ConfigDoc, path: string[]): T | undefined {
  const v = doc.getIn(path) as { toJSON?: () => T } | T | undefined;
  return v && typeof (v as { toJSON?: unknown }).toJSON === 'function' ? (v as { toJSON: () => T }).toJSON() : (v as T | undefined);
}

/** A device that reads the first folder read-only (a valid ID; no Syncthing of it runs). */
export const TEST_READER = { id: 'IFCPKQ3-MCAQX7Q-ARN45RZ-NRZXUG2-SLLWOTC-3X2MPB3-FCZ63RT-MARZ5AB', name: 'friend' };

/** Add TEST_READER to sync.devices (once) and as a reader of the folder at INDEX. */
export function withReader(doc: ConfigDoc, index = 0): void {
  const devices = plainIn<{ id: string; name: string }[]>(doc, ['sync', 'devices']) ?? [];
  const others = devices.filter((d) => d.id !== TEST_READER.id && d.name !== TEST_READER.name);
  doc.setIn(['sync', 'devices'], [...others, TEST_READER]);
  const folders = plainIn<Record<string, unknown>[]>(doc, ['sync', 'folders']) ?? [];
  doc.setIn(['sync', 'folders'], folders.map((f, i) => (i === index ? { ...f, readers: [TEST_READER.name] } : f)));
}

/** The private key (under the test's dir) of the write-only rsync key into the camera folder. */
export const RSYNC_PHASE_KEY = 'rsync-phone-backup';

export function withAllFeatures(doc: ConfigDoc, dir: string, _key: string): void {
  const install = plainIn<string[]>(doc, ['packages', 'install']) ?? [];
  doc.setIn(['packages', 'install'], [...new Set([...install, ...ALL_FEATURE_PACKAGES])]);
  // Browser and WebDAV access: the documents folder, read-only, the panel's user, the default port.
  doc.setIn(['access', 'web'], { folders: ['documents'] });
  // read-only shares: rsync, which the mirror uses, is already in image/appliance.yaml's packages
  withReader(doc);
  // rsync into one folder: a phone's write-only backup key for the camera folder
  const rsyncKey = join(dir, RSYNC_PHASE_KEY);
  if (!existsSync(rsyncKey)) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'phone-backup', '-f', rsyncKey], { stdio: 'ignore' });
  doc.setIn(['access', 'rsync'], [{ name: 'phone-backup', key: { file: `${rsyncKey}.pub` }, folder: 'camera', mode: 'write-only' }]);
  // the health alert, to the journal: its timer runs on every booted test appliance
  doc.setIn(['health', 'alert'], { command: ['/usr/bin/logger', '-t', 'syncpi-health'] });
}

/** Write DIR/appliance.yaml: the test appliance with the test key and EDIT applied. */
export async function writeTestConfig(dir: string, key: string, edit?: (doc: ConfigDoc) => void): Promise<string> {
  const doc = parseDocument(await readFile(join('image', 'appliance.yaml'), 'utf8'));
  doc.setIn(['system', 'user', 'ssh_keys'], [{ file: `${key}.pub` }]);
  withAllFeatures(doc, dir, key);
  edit?.(doc);
  const config = join(dir, 'appliance.yaml');
  await writeFile(config, doc.toString());
  return config;
}

export async function buildTestAppliance(dir: string, config: string, key: string): Promise<TestAppliance> {
  const t0 = Date.now();
  const { plan, loaded, inputs } = planFromFile(config, { secretsFile: join(dir, 'appliance.secrets.yaml') });
  const r = await buildImage({ plan, outDir: join(dir, 'out'), reporter: createReporter({}) });
  return { img: r.img, config, plan, key, panel: panelCredentials(loaded, inputs), buildMs: Date.now() - t0 };
}
