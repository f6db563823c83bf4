/** The model matrix: boot-partition files + base → the Pis an image boots on, and the README's "Which Pi" table agreeing with it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { baseSupport, MODEL_IDS, MODELS, missingTargets, modelMatrix, type BaseFacts, type ModelId } from '../../src/hardware/models.js';
import { fixtures, repoRoot } from '../helpers/fixtures.js';

/** The real boot partition of the default layer (how it was captured: the file's header). */
const trixieBoot = readFileSync(join(fixtures, 'boot', 'debian-trixie-arm64.txt'), 'utf8')
  .split('\n')
  .filter((l) => l && !l.startsWith('#'));
const trixie: BaseFacts = { kind: 'debian', suite: 'trixie', arch: 'arm64' };

function reasonOf(m: ReturnType<typeof modelMatrix>, id: ModelId): string {
  return m.excluded.find((e) => e.model === id)?.reason ?? '(boots)';
}

test('the default trixie arm64 boot partition: Pi 3 family, Zero 2 W, Pi 4 family; not the Pi 5 family, ARMv6 or ARMv7 Pis', () => {
  const m = modelMatrix(trixieBoot, trixie);
  assert.deepEqual(m.boots, ['pi3b', 'pi3b-plus', 'pi3a-plus', 'cm3', 'zero2w', 'pi4b', 'pi400', 'cm4']);
  assert.deepEqual(m.excluded.map((e) => e.model).sort(), ['cm5', 'pi1', 'pi2b', 'pi5', 'pi500', 'zero', 'zero-w']);
  // the Pi 5's device tree is on the card: the kernel, not the card, rules it out
  assert.ok(trixieBoot.includes('::/bcm2712-rpi-5-b.dtb'));
  assert.match(reasonOf(m, 'pi5'), /RP1 .*Linux 6\.12/);
  assert.match(reasonOf(m, 'zero-w'), /ARMv6/);
  assert.match(reasonOf(m, 'pi2b'), /ARMv7.*arm64/);
  assert.equal(m.boots.length + m.excluded.length, MODEL_IDS.length);
});

const piOsArm64 = ['bootcode.bin', 'start.elf', 'fixup.dat', 'start4.elf', 'fixup4.dat', 'kernel8.img', 'kernel_2712.img', 'bcm2710-rpi-3-b.dtb', 'bcm2710-rpi-3-b-plus.dtb', 'bcm2710-rpi-zero-2-w.dtb', 'bcm2711-rpi-4-b.dtb', 'bcm2712-rpi-5-b.dtb', 'bcm2708-rpi-zero-w.dtb'];

const cases: Array<{ what: string; files: string[]; base: BaseFacts; boots: ModelId[]; excluded: Partial<Record<ModelId, RegExp>> }> = [
  {
    what: 'a Debian kernel new enough for the RP1 takes the Pi 5 (its device tree is there) but not the Pi 500 (no device tree)',
    files: trixieBoot.map((f) => f.replace(/6\.12\.117\+deb13/, '6.17.1+deb13')),
    base: trixie,
    boots: ['pi3b', 'pi3b-plus', 'pi3a-plus', 'cm3', 'zero2w', 'pi4b', 'pi400', 'cm4', 'pi5'],
    excluded: { pi500: /no device tree .*bcm2712-rpi-500\.dtb/, cm5: /no device tree/ },
  },
  {
    what: 'a Pi 4 without start4.elf: excluded for its firmware, the Pi 3 still boots',
    files: trixieBoot.filter((f) => !f.endsWith('start4.elf')),
    base: trixie,
    boots: ['pi3b', 'pi3b-plus', 'pi3a-plus', 'cm3', 'zero2w'],
    excluded: { pi4b: /firmware .*start4\.elf/, pi400: /start4\.elf/ },
  },
  {
    what: 'a Pi 3 without bootcode.bin (it has no EEPROM to boot from)',
    files: trixieBoot.filter((f) => !f.endsWith('bootcode.bin')),
    base: trixie,
    boots: ['pi4b', 'pi400', 'cm4'],
    excluded: { pi3b: /bootcode\.bin/, zero2w: /bootcode\.bin/ },
  },
  {
    what: 'Raspberry Pi OS arm64: its own kernel drives the Pi 5; device trees by their downstream names',
    files: piOsArm64,
    base: { kind: 'image', arch: 'arm64' },
    boots: ['pi3b', 'pi3b-plus', 'pi3a-plus', 'zero2w', 'pi4b', 'pi5'],
    excluded: { 'zero-w': /ARMv6 .*cannot run arm64/, pi400: /no device tree/, cm3: /no device tree/ },
  },
  {
    what: 'Raspberry Pi OS armhf: ARMv6 boards boot kernel.img; without it they have no kernel',
    files: [...piOsArm64.filter((f) => !f.startsWith('kernel')), 'kernel.img', 'kernel7.img', 'kernel7l.img', 'bcm2709-rpi-2-b.dtb'],
    base: { kind: 'image', arch: 'armhf' },
    boots: ['zero-w', 'pi2b', 'pi3b', 'pi3b-plus', 'pi3a-plus', 'zero2w', 'pi4b'],
    excluded: { pi5: /no kernel/ },
  },
  {
    what: 'Raspberry Pi OS armhf without kernel.img: the ARMv7 kernel does not run on ARMv6',
    files: [...piOsArm64.filter((f) => !f.startsWith('kernel')), 'kernel7.img'],
    base: { kind: 'image', arch: 'armhf' },
    boots: ['pi3b', 'pi3b-plus', 'pi3a-plus', 'zero2w'],
    excluded: { 'zero-w': /no kernel/, pi4b: /no kernel/ },
  },
  {
    what: 'Debian armhf: the Pi 2 B (ARMv7) boots; ARMv6 stays armel-only',
    files: ['bootcode.bin', 'start.elf', 'fixup.dat', 'vmlinuz-6.12.117+deb13-armmp', 'bcm2836-rpi-2-b.dtb', 'bcm2835-rpi-zero-w.dtb'],
    base: { kind: 'debian', suite: 'trixie', arch: 'armhf' },
    boots: ['pi2b'],
    excluded: { 'zero-w': /armel/ },
  },
];

for (const c of cases) {
  test(`model matrix: ${c.what}`, () => {
    const m = modelMatrix(c.files, c.base);
    assert.deepEqual(m.boots, c.boots);
    for (const [id, re] of Object.entries(c.excluded)) assert.match(reasonOf(m, id as ModelId), re, id);
  });
}

test('targets the image does not boot are named with their reason', () => {
  const m = modelMatrix(trixieBoot.filter((f) => !f.endsWith('bcm2711-rpi-400.dtb')), trixie);
  assert.deepEqual(missingTargets(['pi4b', 'pi3b'], m), []);
  const missing = missingTargets(['pi4b', 'pi400', 'pi5'], m);
  assert.deepEqual(missing.map((x) => x.model), ['pi400', 'pi5']);
  assert.match(missing[0]!.reason, /bcm2711-rpi-400\.dtb/);
});

test('base alone: Debian refuses the Pi 5 family (suite kernels 6.1, 6.12) and ARMv6, and names the alternative', () => {
  for (const suite of ['bookworm', 'trixie']) {
    const why = baseSupport('pi5', { kind: 'debian', suite, arch: 'arm64' });
    assert.ok(why);
    assert.match(why.alternative!, /Raspberry Pi OS Lite/);
  }
  assert.equal(baseSupport('pi5', { kind: 'image', arch: 'arm64' }), null);
  assert.equal(baseSupport('zero', { kind: 'image', arch: 'armhf' }), null);
  assert.match(baseSupport('zero', { kind: 'debian', suite: 'trixie', arch: 'armhf' })!.alternative!, /arch: armhf/);
  assert.equal(baseSupport('pi4b', { kind: 'debian', suite: 'trixie', arch: 'arm64' }), null);
});

/** The README's "Which Pi" table: one row per id, the default image's column and the Pi OS column as the function says. */
test('README "Which Pi" table agrees with the model matrix', () => {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Which Pi'), readme.indexOf('\n## ', readme.indexOf('## Which Pi') + 1));
  const rows = section
    .split('\n')
    .filter((l) => /^\| `[a-z0-9-]+` \|/.test(l))
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
  assert.deepEqual(rows.map((r) => r[0]!.replace(/`/g, '')).sort(), [...MODEL_IDS].sort(), 'one row per model id');
  const m = modelMatrix(trixieBoot, trixie);
  for (const [idCell, name, debian, piOs] of rows) {
    const id = idCell!.replace(/`/g, '') as ModelId;
    assert.equal(name, MODELS.find((x) => x.id === id)!.name, `${id}: board name`);
    assert.equal(debian!.startsWith('yes'), m.boots.includes(id), `${id}: default image column "${debian}"`);
    const arches = (['arm64', 'armhf'] as const).filter((arch) => baseSupport(id, { kind: 'image', arch }) === null);
    assert.equal(piOs, arches.join(', '), `${id}: Raspberry Pi OS Lite column`);
  }
});
