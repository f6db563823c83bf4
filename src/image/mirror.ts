/**
 * The Debian mirror for a bootstrap comes from the build machine's own apt configuration, so
 * a build uses whatever mirror, proxy or local cache that machine already trusts. Nothing here
 * names a host.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

/** Parse deb822 `.sources` text into its `deb` stanzas. */
export function parseDeb822(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = '';
    for (const raw of stanza.split('\n')) {
      if (raw.startsWith('#')) continue;
      if (/^\s/.test(raw) && last) {
        fields.set(last, `${fields.get(last)} ${raw.trim()}`);
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(raw);
      if (!m) continue;
      last = m[1]!.toLowerCase();
      fields.set(last, m[2]!.trim());
    }
    const types = (fields.get('types') ?? '').split(/\s+/);
    if (!types.includes('deb')) continue;
    if ((fields.get('enabled') ?? 'yes').toLowerCase() === 'no') continue;
    const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    for (const uri of words('uris')) out.push({ uri, suites: words('suites'), components: words('components') });
  }
  return out;
}

/** Parse one-line `sources.list` text. Options in brackets are skipped. */
export function parseOneLine(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').replace(/\[[^\]]*\]/, ' ').trim();
    const parts = line.split(/\s+/);
    if (parts[0] !== 'deb' || parts.length < 3) continue;
    out.push({ uri: parts[1]!, suites: [parts[2]!], components: parts.slice(3) });
  }
  return out;
}

/** All `deb` sources configured under an apt etc directory (default /etc/apt). */
export function readAptSources(etcApt = '/etc/apt'): AptSource[] {
  const out: AptSource[] = [];
  const list = join(etcApt, 'sources.list');
  if (existsSync(list)) out.push(...parseOneLine(readFileSync(list, 'utf8')));
  const dir = join(etcApt, 'sources.list.d');
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).sort()) {
      const text = readFileSync(join(dir, f), 'utf8');
      if (f.endsWith('.sources')) out.push(...parseDeb822(text));
      else if (f.endsWith('.list')) out.push(...parseOneLine(text));
    }
  }
  return out;
}

/**
 * The archive mirror: the first source serving a plain suite (not -security, -updates,
 * -backports), because that is the one carrying every release's main archive.
 */
export function hostMirror(etcApt = '/etc/apt'): string {
  const sources = readAptSources(etcApt);
  const plain = sources.find((s) => s.suites.some((x) => !/-(security|updates|backports|proposed-updates)$|\/updates$/.test(x)));
  const pick = plain ?? sources[0];
  if (!pick) {
    throw new UserError(
      `no Debian mirror found in ${etcApt}/sources.list or ${etcApt}/sources.list.d: set base.mirror in the config (e.g. an http:// URL of a Debian archive)`,
    );
  }
  return pick.uri.replace(/\/+$/, '');
}
