/** Paths and small builders shared by tests. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixtures = join(repoRoot, 'test', 'fixtures');
export const fixtureKey = readFileSync(join(fixtures, 'good', 'full.yaml'), 'utf8').match(/ssh-ed25519 [A-Za-z0-9+/=]+ fixture@syncpi/)![0];

export function tempDir(prefix = 'syncpi-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes a config into a fresh temp dir and returns its path. */
export function writeConfig(yaml: string, name = 'appliance.yaml'): string {
  const dir = tempDir();
  const p = join(dir, name);
  writeFileSync(p, yaml);
  return p;
}

export const minimalYaml = (extra = ''): string => `system:\n  user:\n    ssh_keys: ["${fixtureKey}"]\n${extra}`;
