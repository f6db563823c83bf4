/**
 * Device IDs as Syncthing reads them, checked against IDs the real syncthing binary made on this
 * machine: every spelling Syncthing accepts normalises to the one it prints, and any other
 * single-character change is refused by the check characters.
 * Reproduce a failure with SYNCPI_PROPERTY_SEED=<seed printed below>.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { luhn32, normaliseDeviceId } from '../../src/config/device-id.js';
import { checkDeviceId } from '../../src/config/validators.js';
import { tempDir } from '../helpers/fixtures.js';
import { generateHome } from '../helpers/laptop-syncthing.js';

const seed = process.env.SYNCPI_PROPERTY_SEED ? Number(process.env.SYNCPI_PROPERTY_SEED) : Date.now() ^ (Math.random() * 0x7fffffff);
console.log(`property seed: ${seed} (SYNCPI_PROPERTY_SEED=${seed} repeats this run)`);

const dir = tempDir('syncpi-devid-');
let real: string[] = [];
before(async () => {
  real = await Promise.all([0, 1, 2].map((i) => generateHome(join(dir, `home-${i}`))));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const accepted = (s: string): string | undefined => {
  const r = normaliseDeviceId(s);
  return 'id' in r ? r.id : undefined;
};

test('IDs the real syncthing made are accepted as printed, and in every spelling Syncthing reads', () => {
  assert.equal(real.length, 3);
  for (const id of real) {
    assert.match(id, /^[A-Z2-7]{7}(-[A-Z2-7]{7}){7}$/);
    assert.equal(checkDeviceId(id), null, id);
    assert.equal(accepted(id), id);
    assert.equal(accepted(id.toLowerCase()), id);
    assert.equal(accepted(id.replace(/-/g, '')), id);
    assert.equal(accepted(id.replace(/-/g, ' ')), id);
    assert.equal(accepted(`  ${id.toLowerCase().replace(/-/g, '')}\n`), id);
    assert.equal(accepted(id.replace(/O/g, '0').replace(/I/g, '1').replace(/B/g, '8')), id);
    // the config holds the canonical spelling only, so two spellings never name two devices
    assert.match(checkDeviceId(id.toLowerCase()) ?? 'accepted', new RegExp(`written as ${id}`));
  }
});

test('each check character is the one Syncthing computes for its 13 characters', () => {
  for (const id of real) {
    const raw = id.replace(/-/g, '');
    for (let i = 0; i < 4; i++) assert.equal(luhn32(raw.slice(i * 14, i * 14 + 13)), raw[i * 14 + 13], `${id} group ${i}`);
  }
});

test('wrong shapes are refused with what would be valid', () => {
  const id = real[0]!;
  const raw = id.replace(/-/g, '');
  const cases: [string, RegExp][] = [
    ['', /not 56/],
    [id.slice(0, -1), /55 characters/],
    [`${id}A`, /57 characters/],
    [raw.slice(0, 13) + raw.slice(14, 27) + raw.slice(28, 41) + raw.slice(42, 55), /old form without check characters/],
    [id.replace(/^./, '9'), /"9" is not one of them/],
    [id.replace(/^./, '!'), /"!" is not one of them/],
  ];
  for (const [input, want] of cases) {
    const r = normaliseDeviceId(input);
    assert.ok('problem' in r, `${JSON.stringify(input)} accepted`);
    assert.match(r.problem, want, input);
    assert.match(r.problem, /8 groups of 7 characters A–Z 2–7/);
  }
});

/** Characters Syncthing reads as the same one: case, its typo map, and the two separators. */
const same = (a: string, b: string): boolean => {
  const fold = (c: string): string => ({ '0': 'O', '1': 'I', '8': 'B', ' ': '-' })[c.toUpperCase()] ?? c.toUpperCase();
  return fold(a) === fold(b);
};

test('property: every single-character substitution in a real ID is refused unless Syncthing reads it as the same character', () => {
  const chars = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c));
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 62 }), chars, (which, pos, ch) => {
      const id = real[which]!;
      fc.pre(ch !== id[pos]);
      const mutated = id.slice(0, pos) + ch + id.slice(pos + 1);
      const got = accepted(mutated);
      if (same(ch, id[pos]!)) assert.equal(got, id, `${mutated} should read as ${id}`);
      else assert.equal(got, undefined, `${mutated} (position ${pos} ${id[pos]}→${ch}) was accepted as ${got}`);
    }),
    { seed, numRuns: 3000 },
  );
});

test('every substitution by another base32 character, at every position, is refused (exhaustive)', () => {
  const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  for (const id of real) {
    for (let pos = 0; pos < id.length; pos++) {
      if (id[pos] === '-') continue;
      for (const ch of B32) {
        if (ch === id[pos]) continue;
        assert.equal(accepted(id.slice(0, pos) + ch + id.slice(pos + 1)), undefined, `${id} position ${pos} → ${ch}`);
      }
    }
  }
});
