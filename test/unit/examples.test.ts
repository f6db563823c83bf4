/** What ships must hold: the example configs validate, and the committed schemas match the code. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { jsonSchema } from '../../src/config/schema.js';
import { fixtureKey, repoRoot, tempDir } from '../helpers/fixtures.js';

function withHomeKey<T>(fn: () => T): T {
  const home = tempDir('syncpi-home-');
  mkdirSync(join(home, '.ssh'));
  writeFileSync(join(home, '.ssh', 'id_ed25519.pub'), `${fixtureKey}\n`);
  const prev = process.env.HOME;
  process.env.HOME = home;
  try {
    return fn();
  } finally {
    process.env.HOME = prev;
  }
}

for (const name of ['appliance.yaml', 'minimal.yaml']) {
  test(`image/${name} validates`, () => {
    const { config } = withHomeKey(() => loadConfig(join(repoRoot, 'image', name)));
    assert.deepEqual(config.system.user.ssh_keys, [fixtureKey]);
  });
}

test('image/fleet.yaml is a valid inventory', async () => {
  const { loadInventory } = await import('../../src/fleet/inventory.js');
  const inv = loadInventory(join(repoRoot, 'image', 'fleet.yaml'));
  assert.ok(inv.hosts.length >= 3);
});

test('the committed appliance schema is the one the code produces', () => {
  const committed = JSON.parse(readFileSync(join(repoRoot, 'schema', 'appliance.schema.json'), 'utf8'));
  assert.deepEqual(committed, JSON.parse(JSON.stringify(jsonSchema())), 'run npm run build and commit schema/');
});
