/**
 * The bundle manifest: one record per line, fields separated by a tab, the record kind first.
 * provision/apply.sh and verify.sh read it with `IFS=<tab> read -r`, so no value may contain a
 * tab, a newline or another control character, and no field may be empty (the shell would merge
 * two tabs into one separator): "-" stands for "not given" where a field is optional.
 * The config schema already forbids such values; they are checked again here because this is
 * the last point before they reach a shell on a target.
 */
import { posix } from 'node:path';
import { UserError } from '../util/errors.js';

export const MANIFEST_HEADER = 'syncpi-bundle\t1';

// Control characters (C0, DEL, C1) and the Unicode line/paragraph separators.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

function bad(what: string, value: string, valid: string): never {
  throw new UserError(`invalid ${what} ${JSON.stringify(value)} in the plan: ${valid}`);
}

/** Any free-text field (handler argv, sysctl values, key lines): no control characters. */
export function checkText(what: string, value: string, opts: { allowEmpty?: boolean } = {}): string {
  if (typeof value !== 'string') bad(what, String(value), 'expected a string');
  if (!opts.allowEmpty && value === '') bad(what, value, 'must not be empty');
  if (CONTROL.test(value)) bad(what, value, 'must not contain tabs, newlines or other control characters');
  return value;
}

export function checkPath(what: string, value: string): string {
  checkText(what, value);
  if (!value.startsWith('/')) bad(what, value, 'must be an absolute path');
  if (value.length > 4095) bad(what, value, 'is too long');
  if (value.split('/').includes('..')) bad(what, value, 'must not contain ".."');
  if (value !== '/' && (posix.normalize(value) !== value || value.endsWith('/'))) {
    bad(what, value, `must be normalised (e.g. ${JSON.stringify(posix.normalize(value).replace(/(.)\/$/, '$1'))})`);
  }
  return value;
}

/** Octal mode → the form `stat -c %a` prints ("0644" → "644"), so the shell compares strings. */
export function checkMode(what: string, value: string): string {
  if (typeof value !== 'string' || !/^[0-7]{3,4}$/.test(value)) bad(what, String(value), 'expected an octal mode such as "0644"');
  return parseInt(value, 8).toString(8);
}

export function checkAccount(what: string, value: string): string {
  if (typeof value !== 'string' || !/^[a-z_][a-z0-9_-]{0,31}$/.test(value)) {
    bad(what, String(value), 'expected a user or group name (lowercase letters, digits, "_" and "-", starting with a letter or "_")');
  }
  return value;
}

/** Purge entries may be globs (* and ?), expanded on the target against what is installed. */
export function checkPackagePattern(what: string, value: string): string {
  if (typeof value !== 'string' || !/^[a-z0-9*?][a-z0-9+.*?-]*$/.test(value)) {
    bad(what, String(value), 'expected a Debian package name or glob (lowercase letters, digits, "+", "-", ".", "*", "?")');
  }
  return value;
}

export function checkPackage(what: string, value: string): string {
  if (typeof value !== 'string' || !/^[a-z0-9][a-z0-9+.-]+(:[a-z0-9]+)?$/.test(value)) {
    bad(what, String(value), 'expected a Debian package name (lowercase letters, digits, "+", "-", ".")');
  }
  return value;
}

export function checkUnit(what: string, value: string): string {
  if (
    typeof value !== 'string' ||
    value.length > 255 ||
    !/^[A-Za-z0-9_:@\\][A-Za-z0-9_.:@\\-]*\.(service|socket|timer|mount|automount|target|path|swap|slice)$/.test(value)
  ) {
    bad(what, String(value), 'expected a systemd unit name such as "syncthing@pi.service"');
  }
  return value;
}

export function checkSysctlKey(what: string, value: string): string {
  if (typeof value !== 'string' || !/^[a-z0-9_][a-z0-9_.-]*$/.test(value)) bad(what, String(value), 'expected a sysctl key such as "fs.inotify.max_user_watches"');
  return value;
}

/**
 * A kernel command-line parameter the converger places on cmdline.txt: the kernel splits the line
 * at white space and treats double quotes specially, so neither may appear, nor "=" in the name.
 */
export function checkKernelParam(what: string, name: string, value: string): [string, string] {
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9_.-]*$/.test(name)) bad(`${what} name`, String(name), 'expected a kernel parameter name such as "usb-storage.quirks"');
  if (typeof value !== 'string' || !/^[A-Za-z0-9:,._+-]+$/.test(value)) bad(`${what} ${name}`, String(value), 'expected a value without spaces, quotes or control characters');
  return [name, value];
}

/** A name used as a shell word's value that must not look like an option. */
export function checkName(what: string, value: string): string {
  checkText(what, value);
  if (value.startsWith('-')) bad(what, value, 'must not start with "-"');
  return value;
}

/** One manifest line; every field is re-checked so an encoding bug cannot shift columns. */
export function record(kind: string, ...fields: string[]): string {
  for (const f of [kind, ...fields]) {
    if (f === '' || CONTROL.test(f)) throw new Error(`internal: manifest field ${JSON.stringify(f)} of ${kind} is empty or has a control character`);
  }
  return [kind, ...fields].join('\t');
}

/** Like record() but the last field may be empty (an empty argv element). */
export function recordTrailingEmpty(kind: string, ...fields: string[]): string {
  const last = fields[fields.length - 1] ?? '';
  if (last !== '') return record(kind, ...fields);
  return `${record(kind, ...fields.slice(0, -1))}\t`;
}

/** Split a manifest back into records (for tests and for reading a bundle). */
export function parseManifest(text: string): string[][] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines[0] !== MANIFEST_HEADER) throw new Error(`not a syncpi bundle manifest (first line ${JSON.stringify(lines[0])})`);
  return lines.slice(1).map((l) => l.split('\t'));
}
