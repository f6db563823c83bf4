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

function xmlEscape(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** One word of a systemd command line or Environment= value: always double-quoted. */
export function systemdQuote(s: string): string {
  if (/[\u0000-\u001f\u007f]/.test(s)) throw new Error('control characters cannot be passed to systemd');
  // Inside "…" systemd treats \ and " specially; $ and % are expanded in Exec lines and specifiers.
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '$$$$').replace(/%/g, '%%')}"`;
}

/** Free text for Description= and the like: specifiers escaped, kept on one line. */
function systemdText(s: string): string {
  return String(s).replace(/%/g, '%%').replace(/[\r\n]/g, ' ');
}

/** NetworkManager keyfile values: GLib key-file escaping. */
function nmValue(s: string): string {
  return String(s)
    .replace(/\\/g, '\\\\')
    .replace(/\n/g, '\\n')
    .replace(/\t/g, '\\t')
    .replace(/\r/g, '\\r')
    .replace(/^ /, '\\s')
    .replace(/;/g, '\\;');
}

hb.registerHelper('xml', (s: unknown) => xmlEscape(s));
hb.registerHelper('sh', (s: unknown) => shq(String(s)));
hb.registerHelper('systemd', (s: unknown) => systemdText(String(s)));
hb.registerHelper('systemdQuote', (s: unknown) => systemdQuote(String(s)));
hb.registerHelper('systemdArgv', (argv: unknown) => {
  if (!Array.isArray(argv) || argv.length === 0) throw new Error('systemdArgv needs a non-empty list');
  return argv.map((a) => systemdQuote(String(a))).join(' ');
});
hb.registerHelper('nmValue', (s: unknown) => nmValue(String(s)));
hb.registerHelper('join', (list: unknown, sep: unknown) => (Array.isArray(list) ? list.join(String(sep)) : ''));
hb.registerHelper('not', (x: unknown) => !x);
hb.registerHelper('eq', (a: unknown, b: unknown) => a === b);

const cache = new Map<string, Handlebars.TemplateDelegate>();

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
    const msg = (e as Error).message.split('\n')[0];
    throw new UserError(`template ${path}: ${msg}; every value a template uses must be provided`);
  }
}
