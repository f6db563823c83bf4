/**
 * drive.usb_quirks from config to cmdline.txt: the plan's kernel parameter, its bundle record, and
 * the converger's own line editor (provision/kparam.awk, run by this machine's awk) judged by a
 * port of the kernel's parser. Property: any quirk list the config accepts, on any command line,
 * becomes exactly one usb-storage.quirks parameter with exactly that value, every other parameter
 * kept in order, one line; removing it gives the original bytes back.
 * Reproduce a failure with SYNCPI_PROPERTY_SEED=<seed printed in the failure>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import fc from 'fast-check';
import { planFromFile } from '../../src/plan/load.js';
import { buildBundle } from '../../src/bundle/bundle.js';
import { parseManifest, checkKernelParam } from '../../src/bundle/manifest.js';
import { checkUsbQuirk, USB_QUIRK_FLAGS, USB_QUIRKS_MAX, USB_QUIRKS_PARAM, usbQuirksValue } from '../../src/hardware/usb-quirks.js';
import { minimalYaml, repoRoot, writeConfig } from '../helpers/fixtures.js';
import { kernelArgs } from '../helpers/kernel-cmdline.js';

const seed = process.env.SYNCPI_PROPERTY_SEED ? Number(process.env.SYNCPI_PROPERTY_SEED) : Date.now() ^ (Math.random() * 0x7fffffff);
console.log(`property seed: ${seed} (SYNCPI_PROPERTY_SEED=${seed} repeats this run)`);
const AWK = join(repoRoot, 'provision', 'kparam.awk');

function kparam(input: string, mode: 'set' | 'remove', value = ''): string {
  const r = spawnSync('awk', ['-v', `mode=${mode}`, '-v', `name=${USB_QUIRKS_PARAM}`, '-v', `value=${value}`, '-f', AWK], { input, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

const planOf = (yaml: string) => planFromFile(writeConfig(minimalYaml(yaml))).plan;

test('drive.usb_quirks becomes one kernel parameter of the plan and one kparam record; none without it', async () => {
  const plan = planOf('drive:\n  label: data\n  usb_quirks: [174c:55aa:u, 152d:0578:ut]\n');
  assert.deepEqual(plan.kernelParams, { 'usb-storage.quirks': '174c:55aa:u,152d:0578:ut' });
  const records = parseManifest((await buildBundle(plan)).manifest).filter((r) => r[0] === 'kparam');
  assert.deepEqual(records, [['kparam', 'usb-storage.quirks', '174c:55aa:u,152d:0578:ut']]);
  const bare = planOf('drive:\n  label: data\n');
  assert.deepEqual(bare.kernelParams, {});
  assert.deepEqual(parseManifest((await buildBundle(bare)).manifest).filter((r) => r[0] === 'kparam'), []);
  assert.ok((await buildBundle(bare)).entries.some((e) => e.path === 'kparam.awk'), 'the editor travels in every bundle');
});

test('the bundle refuses a kernel parameter that could split or quote the line', () => {
  for (const bad of ['a b', 'a"b', 'a\tb', "a'b", '']) assert.throws(() => checkKernelParam('kernelParams', USB_QUIRKS_PARAM, bad), /without spaces, quotes/);
  assert.throws(() => checkKernelParam('kernelParams', 'a=b', 'x'), /kernel parameter name/);
});

const hex4 = fc.stringMatching(/^[0-9a-f]{4}$/);
const flags = fc.uniqueArray(fc.constantFrom(...Object.keys(USB_QUIRK_FLAGS)), { minLength: 1, maxLength: 6 }).map((f) => f.join(''));
/** Quirk lists as the config accepts them: each entry valid, one per device, at most USB_QUIRKS_MAX in all. */
const quirkList = fc
  .uniqueArray(fc.tuple(hex4, hex4, flags), { minLength: 1, maxLength: 8, selector: ([v, p]) => `${v}:${p}` })
  .map((l) => l.map(([v, p, f]) => `${v}:${p}:${f}`))
  .filter((l) => l.every((q) => checkUsbQuirk(q) === null) && usbQuirksValue(l).length <= USB_QUIRKS_MAX);

const space = fc.stringMatching(/^[ \t]{1,3}$/);
const name = fc.stringMatching(/^[a-z][a-z0-9_.-]{0,12}$/).filter((n) => n.replace(/-/g, '_') !== 'usb_storage.quirks');
/** Words a real cmdline.txt holds: flags, name=value, quoted values with spaces, init's "--". */
const word = fc.oneof(
  name,
  fc.tuple(name, fc.stringMatching(/^[A-Za-z0-9:,.=/+-]{0,16}$/)).map(([n, v]) => `${n}=${v}`),
  fc.tuple(name, fc.stringMatching(/^[a-z ]{1,12}$/)).map(([n, v]) => `${n}="${v}"`),
  fc.constant('--'),
);
const line = fc
  .record({ lead: fc.oneof(fc.constant(''), space), words: fc.array(fc.tuple(word, space), { maxLength: 10 }), trail: fc.oneof(fc.constant(''), space) })
  .map(({ lead, words, trail }) => lead + words.map(([w, s], i) => (i < words.length - 1 ? w + s : w)).join('') + trail);

test('property: any accepted quirk list yields exactly the intended parameter on any line, and leaves again without a trace', () => {
  fc.assert(
    fc.property(line, quirkList, (before, quirks) => {
      const value = usbQuirksValue(quirks);
      const after = kparam(`${before}\n`, 'set', value);
      assert.ok(after.endsWith('\n') && after.indexOf('\n') === after.length - 1, `one line: ${JSON.stringify(after)}`);
      const was = kernelArgs(before);
      const now = kernelArgs(after.slice(0, -1));
      const ours = now.params.filter((p) => p.param === USB_QUIRKS_PARAM);
      assert.deepEqual(ours, [{ param: USB_QUIRKS_PARAM, val: value }]);
      assert.deepEqual(now.params.filter((p) => p.param !== USB_QUIRKS_PARAM), was.params, 'every other kernel parameter kept, in order');
      assert.equal(now.init, was.init, "init's arguments untouched");
      assert.equal(kparam(after, 'remove'), `${before}\n`, 'removal restores the line byte for byte');
      assert.equal(kparam(after, 'set', value), after, 'setting it again changes nothing');
    }),
    { seed, numRuns: 150 },
  );
});

test('property: a quirk word already on the line (either spelling) is replaced where it stood, never doubled', () => {
  fc.assert(
    fc.property(line, quirkList, quirkList, fc.constantFrom('usb-storage.quirks', 'usb_storage.quirks'), fc.nat(), (before, old, quirks, spelling, at) => {
      const words = before.trim().split(/[ \t]+/).filter(Boolean);
      const dd = words.indexOf('--');
      // only before "--" is it a kernel parameter (and free of a quoted word's insides)
      if (words.some((w) => w.includes('"'))) return;
      const pos = at % ((dd < 0 ? words.length : dd) + 1);
      words.splice(pos, 0, `${spelling}=${usbQuirksValue(old)}`);
      const value = usbQuirksValue(quirks);
      const after = kparam(`${words.join(' ')}\n`, 'set', value).slice(0, -1);
      const got = kernelArgs(after).params;
      assert.deepEqual(got.filter((p) => p.param.replace(/-/g, '_') === 'usb_storage.quirks'), [{ param: USB_QUIRKS_PARAM, val: value }]);
      assert.equal(after.split(' ').indexOf(`${USB_QUIRKS_PARAM}=${value}`), pos, 'in place');
    }),
    { seed, numRuns: 100 },
  );
});
