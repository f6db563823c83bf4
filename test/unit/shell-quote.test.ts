/**
 * shq is the one function that quotes values for a target's shell: every hostile value must come
 * out of a real POSIX shell (dash, the shell of Debian's /bin/sh) exactly as it went in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { shq, shJoin } from '../../src/util/shell.js';

const HOSTILE = [
  '$(reboot)',
  '`reboot`',
  "it's",
  "'",
  "''",
  '"double" quotes',
  'back\\slash\\',
  'new\nline',
  'tab\there',
  '../../etc/shadow',
  '-rf',
  '--option=1',
  '',
  ' ',
  '  leading and trailing  ',
  '*',
  '~root',
  '$HOME ${PATH} $1 $@',
  'a;b&&c||d|e',
  '>out <in 2>&1',
  '!history',
  '#comment',
  'ünïcødé — 日本語 🎉',
  'semi;colon',
  '\u2028separator',
  'x'.repeat(5000),
];

function throughDash(script: string): string {
  return execFileSync('dash', ['-c', script], { encoding: 'utf8' });
}

test('shq: every hostile value survives a real POSIX shell unchanged', () => {
  for (const v of HOSTILE) {
    assert.equal(throughDash(`printf '%s' ${shq(v)}`), v, `value ${JSON.stringify(v).slice(0, 60)}`);
  }
});

test('shq: nothing is executed or expanded', () => {
  // If quoting failed, the command substitution would print "PWNED".
  const out = throughDash(`printf '%s|' ${shJoin(['$(echo PWNED)', '`echo PWNED`', '$((1+1))'])}`);
  assert.equal(out, '$(echo PWNED)|`echo PWNED`|$((1+1))|');
});

test('shJoin keeps argument boundaries', () => {
  const argv = ['a b', '', "c'd", 'e\nf'];
  const out = throughDash(`for a in ${shJoin(argv)}; do printf '[%s]' "$a"; done`);
  assert.equal(out, argv.map((a) => `[${a}]`).join(''));
});

test('shq refuses NUL, which no shell argument can carry', () => {
  assert.throws(() => shq('a\0b'), /NUL/);
});

test('shq leaves plain words readable', () => {
  assert.equal(shq('syncthing@pi.service'), 'syncthing@pi.service');
  assert.equal(shq('/etc/ssh/sshd_config.d/10-syncpi.conf'), '/etc/ssh/sshd_config.d/10-syncpi.conf');
});
