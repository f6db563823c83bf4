/**
 * The default appliance (image/appliance.yaml) built for a test: the same config with a key the
 * test holds and its own secrets file, optionally edited (e.g. a laptop's device ID). The base
 * layer comes from the build cache, so after the first cold build this is a config-only rebuild.
 */
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

/** Write DIR/appliance.yaml: the default appliance with the test key and EDIT applied. */
export async function writeTestConfig(dir: string, key: string, edit?: (doc: ReturnType<typeof parseDocument>) => void): Promise<string> {
  const doc = parseDocument(await readFile(join('image', 'appliance.yaml'), 'utf8'));
  doc.setIn(['system', 'user', 'ssh_keys'], [{ file: `${key}.pub` }]);
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
