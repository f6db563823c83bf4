/**
 * Template rendering: Handlebars in strict mode, so a missing value is an error naming the
 * template and the value, never an empty string in a generated file. Escaping is explicit per
 * output language (xml, systemd, sh, nm) because no single HTML-style escape fits them all.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Handlebars from 'handlebars';
import { shq } from '../util/shell.js';
import { UserError } from '../util/errors.js';

const hb = Handlebars.create();

/**
 * A value the target file's syntax cannot carry at all. The loader should refuse such values with
 * their key path; this is the last line of defence, so a plan never holds a file that means
 * something other than the config.
 */
export class UnrepresentableValue extends Error {}

function refuse(what: string, s: string, why: string): never {
  // Invisible characters shown as \uXXXX: the offending one is usually invisible.
  const quoted = JSON.stringify(s.length > 60 ? s.slice(0, 60) : s).replace(/[\p{C}\p{Noncharacter_Code_Point}]/gu, (c) => {
    const code = c.codePointAt(0)!;
    return code > 0xffff ? `\\u{${code.toString(16)}}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
  const shown = s.length > 60 ? `${quoted}…` : quoted;
  throw new UnrepresentableValue(`${what} ${shown} cannot be written: ${why}`);
}

/** XML 1.0 text and attribute values; the characters XML has no way to hold at all (not even as &#…;) are refused. */
function xmlEscape(s: unknown): string {
  const text = String(s);
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|\p{Cs}/u.test(text)) refuse('the value', text, 'XML 1.0 has no way to hold control characters, U+FFFE, U+FFFF or lone surrogates');
  // Tab and line ends as references: a parser turns literal ones in an attribute into spaces.
  return text.replace(/[&<>"'\t\n\r]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;', '\t': '&#9;', '\n': '&#10;', '\r': '&#13;' })[c]!);
}

/** systemd drops a whole assignment whose text is not "UTF-8 clean" (its unichar_is_valid). */
function systemdUnicode(what: string, s: string): void {
  if (/\p{Cs}/u.test(s)) refuse(what, s, 'it holds a lone UTF-16 surrogate, which is not Unicode text');
  if (/\p{Noncharacter_Code_Point}/u.test(s)) refuse(what, s, 'systemd ignores a line holding a Unicode non-character such as U+FFFE or U+FFFF');
}

/**
 * The inside of one "…" word of a systemd unit line (ExecStart=, Environment=). systemd resolves
 * %-specifiers in the whole line, then unquotes and C-unescapes each word; ExecStart= arguments
 * are also $-expanded when the command runs, Environment= values never are.
 */
function systemdWord(what: string, s: string, opts: { expandsDollar: boolean; allowControl: RegExp }): string {
  systemdUnicode(what, s);
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '\\' || ch === '"') out += `\\${ch}`;
    else if (ch === '%') out += '%%';
    else if (ch === '$') out += opts.expandsDollar ? '$$' : '$';
    else if (code < 0x20 || code === 0x7f) {
      if (code === 0 || !opts.allowControl.test(ch)) refuse(what, s, `systemd does not accept the control character U+${code.toString(16).padStart(4, '0').toUpperCase()} there`);
      out += `\\x${code.toString(16).padStart(2, '0')}`;
    } else out += ch;
  }
  return `${out}"`;
}

/** One argument of ExecStart= and the like. */
export function systemdExecWord(s: string): string {
  return systemdWord('the command-line argument', s, { expandsDollar: true, allowControl: /[^\0]/ });
}

/**
 * A whole command line. The program path is the first word and is never $-expanded, while argv[0]
 * (the same word) is: a path holding $ therefore goes in the "@path argv0 …" form, where the two
 * are separate words with their own rule.
 */
export function systemdExec(argv: readonly string[]): string {
  if (argv.length === 0) throw new Error('systemdArgv needs a non-empty list');
  const path = argv[0]!;
  // systemd-analyze verify: "Executable name contains special characters", "… specifies a directory".
  if (/[\\"']/.test(path)) refuse('the program path', path, 'systemd refuses a program path holding \\, " or \'');
  if (path.endsWith('/') || path.split('/').some((c) => Buffer.byteLength(c) > 255)) refuse('the program path', path, 'systemd needs a file path, each part at most 255 bytes');
  if (path.split('/').slice(1).some((c) => c === '' || c === '.' || c === '..')) refuse('the program path', path, 'systemd needs a normalized path, without empty, "." or ".." parts');
  const words = argv.map(systemdExecWord).join(' ');
  return path.includes('$') ? `@${systemdWord('the program path', path, { expandsDollar: false, allowControl: /[^\0]/ })} ${words}` : words;
}

/** One NAME=value of Environment=: specifiers doubled, $ literal; systemd allows only tab and newline among control characters in a value. */
export function systemdEnv(assignment: string): string {
  return systemdWord('the environment value', assignment, { expandsDollar: false, allowControl: /[\t\n]/ });
}

/**
 * Free text for Description= and the like, where systemd expands specifiers and nothing else: %
 * is doubled. A final backslash would join the next line to this one (RequiresMountsFor= would
 * become part of the description); systemd decides that before it strips trailing blanks, so a
 * space after it keeps the line whole and the text unchanged.
 */
export function systemdText(s: string): string {
  systemdUnicode('the text', s);
  if (/[\u0000-\u001f\u007f]/.test(s)) refuse('the text', s, 'a systemd unit line cannot hold a newline or another control character');
  const text = s.replace(/%/g, '%%');
  return text.endsWith('\\') ? `${text} ` : text;
}

/**
 * One path of BindPaths= and the like, as a "…" word: systemd splits those lines at blanks and
 * ':' outside quotes and resolves specifiers, but knows no escape a path could need besides.
 */
export function systemdPath(s: string): string {
  systemdUnicode('the path', s);
  if (/[\u0000-\u001f\u007f"\\]/.test(s)) refuse('the path', s, 'a systemd path list cannot hold control characters, " or \\');
  return `"${s.replace(/%/g, '%%')}"`;
}

/** GLib key-file string escaping (g_key_file_set_string): what NetworkManager's keyfile reader undoes. */
function keyfileString(s: string): string {
  let out = '';
  let leading = true;
  for (const ch of s) {
    if (ch === ' ' && leading) {
      out += '\\s';
      continue;
    }
    leading = false;
    out += ch === '\\' ? '\\\\' : ch === '\n' ? '\\n' : ch === '\t' ? '\\t' : ch === '\r' ? '\\r' : ch;
  }
  return out;
}

function keyfileUnicode(what: string, s: string): void {
  if (/\p{Cs}/u.test(s)) refuse(what, s, 'it holds a lone UTF-16 surrogate, which is not Unicode text');
  if (s.includes('\0')) refuse(what, s, 'a NetworkManager keyfile cannot hold a NUL byte');
}

/** A NetworkManager string property such as wifi-security.psk. */
export function nmString(s: string): string {
  keyfileUnicode('the value', s);
  return keyfileString(s);
}

/**
 * wifi.ssid is bytes. NetworkManager writes printable ASCII as a string with ; escaped (so that
 * "1;2;" is not read as a byte list) and anything else as a list of byte values; we write what it
 * writes, so its own reader gets the exact bytes back.
 */
export function nmSsid(s: string): string {
  keyfileUnicode('the SSID', s);
  if (/^[\x20-\x7e]*$/.test(s)) return keyfileString(s.replace(/;/g, '\\;'));
  return [...Buffer.from(s, 'utf8')].map((b) => `${b};`).join('');
}

hb.registerHelper('xml', (s: unknown) => xmlEscape(s));
hb.registerHelper('sh', (s: unknown) => shq(String(s)));
hb.registerHelper('systemd', (s: unknown) => systemdText(String(s)));
hb.registerHelper('systemdQuote', (s: unknown) => systemdExecWord(String(s)));
hb.registerHelper('systemdArgv', (argv: unknown) => {
  if (!Array.isArray(argv) || argv.length === 0) throw new Error('systemdArgv needs a non-empty list');
  return systemdExec(argv.map(String));
});
hb.registerHelper('systemdEnv', (s: unknown) => systemdEnv(String(s)));
hb.registerHelper('nmValue', (s: unknown) => nmString(String(s)));
hb.registerHelper('nmSsid', (s: unknown) => nmSsid(String(s)));
hb.registerHelper('join', (list: unknown, sep: unknown) => (Array.isArray(list) ? list.join(String(sep)) : ''));
hb.registerHelper('not', (x: unknown) => !x);
hb.registerHelper('eq', (a: unknown, b: unknown) => a === b);

const cache = new Map<string, Handlebars.TemplateDelegate>();

/**
 * Where every plan input is found: Handlebars templates and the plain files features read
 * verbatim (package profiles, the first-boot script). One lookup, so a user's folder can replace
 * any of them by the same relative name.
 */
export interface TemplateSource {
  /** Built-in templates folder. */
  builtin: string;
  /** A user's folder whose files override built-in ones of the same relative name. */
  override?: string;
}

export function templatePath(src: TemplateSource, name: string): string {
  if (src.override) {
    const p = join(src.override, name);
    if (existsSync(p)) return p;
  }
  const p = join(src.builtin, name);
  if (!existsSync(p)) {
    throw new UserError(`template ${name} not found in ${src.override ? `${src.override} or ` : ''}${src.builtin}; expected a file templates/${name}`);
  }
  return p;
}

/** A plan input's text, as is (no template expansion). */
export function readInput(src: TemplateSource, name: string): string {
  return readFileSync(templatePath(src, name), 'utf8');
}

export function render(src: TemplateSource, name: string, context: object): string {
  const path = templatePath(src, name);
  // Keyed by content, not path: a template edited between two plans in one process is recompiled.
  const source = readFileSync(path, 'utf8');
  let tpl = cache.get(source);
  if (!tpl) {
    tpl = hb.compile(source, { strict: true, noEscape: true, preventIndent: true });
    cache.set(source, tpl);
  }
  try {
    return tpl(context);
  } catch (e) {
    if (e instanceof UnrepresentableValue) throw new UserError(`template ${path}: ${e.message}`);
    const msg = (e as Error).message.split('\n')[0];
    throw new UserError(`template ${path}: ${msg}; every value a template uses must be provided`);
  }
}
