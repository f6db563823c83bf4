/**
 * The real readers of the files a plan writes, for tests: where each file lands in a scratch root,
 * what systemd parsed from a unit, what NetworkManager read from a keyfile.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Plan } from '../../src/plan/types.js';
import { tempDir } from './fixtures.js';

export function need(tool: string): string {
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${tool} is required for this test (installed by .ci/run)`);
  return r.stdout.trim();
}

/** Writes every file of the plan under a fresh directory, as the converger would on a target. */
export function writeRoot(plan: Plan): string {
  const root = tempDir('syncpi-root-');
  // systemd's test mode runs as nobody (below) and must read the units.
  chmodSync(root, 0o755);
  for (const f of plan.files) {
    const p = join(root, f.path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, f.content, { mode: parseInt(f.mode, 8) });
  }
  return root;
}

/** systemd-analyze verify on units, less "Command X is not executable" for programs this machine lacks (the plan's own scripts, say). */
export function verifyUnits(units: string[], opts: { cwd: string; planPaths: Set<string> }): string[] {
  const r = spawnSync('systemd-analyze', ['verify', ...units], { encoding: 'utf8', cwd: opts.cwd });
  return `${r.stdout}${r.stderr}`
    .split('\n')
    .filter(Boolean)
    .filter((l) => {
      const m = /Command (.+) is not executable: No such file or directory$/s.exec(l);
      return !(m && opts.planPaths.has(m[1]!));
    });
}

export interface ParsedUnit {
  description: string;
  environment: string[];
  /** ExecStart= argv as the command will see it: systemd's stored words, $-expanded as at run time (null: a word would expand a variable). */
  execStart: (string | null)[][];
  requiresMountsFor: string[];
  /** BindPaths= and BindReadOnlyPaths= as systemd holds them: "SOURCE:DESTINATION:OPTIONS". */
  bindPaths: string[];
  bindReadOnlyPaths: string[];
  warnings: string;
}

/**
 * What systemd itself parsed from units: PID 1's test mode (`systemd --test`) loads the units
 * with the real unit-file parser and dumps every loaded unit's settings. It refuses to run as
 * root, so it runs as nobody; the default unit path stays behind ours for the units ours need.
 */
export function systemdParse(unitDir: string, units: string[]): Map<string, ParsedUnit> {
  const probe = 'syncpi-parse-probe.target';
  writeFileSync(join(unitDir, probe), `[Unit]\nDescription=probe\n${units.map((u) => `Wants=${u}\n`).join('')}`, { mode: 0o644 });
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/lib/systemd/systemd', '--test', '--system', `--unit=${probe}`], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: '/nonexistent', SYSTEMD_UNIT_PATH: `${unitDir}:`, SYSTEMD_LOG_LEVEL: 'warning' },
    maxBuffer: 256 * 1024 * 1024,
  });
  assert.equal(r.status, 0, `systemd --test failed:\n${r.stderr.slice(-4000)}`);
  const out = new Map<string, ParsedUnit>();
  for (const unit of units) {
    const start = r.stdout.indexOf(`\t-> Unit ${unit}:\n`);
    assert.ok(start >= 0, `systemd did not load ${unit}:\n${r.stderr.slice(-4000)}`);
    const end = r.stdout.indexOf('\n\t-> Unit ', start + 1);
    const body = r.stdout.slice(start, end < 0 ? undefined : end).split('\n').slice(1);
    // A property line is "\t\tName: value"; an environment value with a newline runs onto the
    // lines after it, up to the next property line.
    const lines: string[] = [];
    for (const l of body) {
      const prev = lines[lines.length - 1];
      const inEnv = prev !== undefined && prev.startsWith('\t\tEnvironment: ');
      if (lines.length === 0 || (inEnv ? /^\t\t(->|[A-Z][A-Za-z0-9 ()/.-]*:( |$))/ : /^\t\t(\t|->|[A-Za-z][A-Za-z0-9 ()/.-]*:( |$))/).test(l)) lines.push(l);
      else lines[lines.length - 1] += `\n${l}`;
    }
    const values = (key: string) => lines.filter((l) => l.startsWith(`\t\t${key}: `)).map((l) => l.slice(key.length + 4));
    out.set(unit, {
      description: values('Description')[0] ?? '',
      environment: values('Environment'),
      execStart: lines
        .map((l, i) => (l === '\t\t-> ExecStart:' ? lines[i + 1] : undefined))
        .filter((l): l is string => l !== undefined)
        .map((l) => unquoteCommandLine(l.replace(/^\t\t\tCommand Line: /, '')).map(expandAtRun)),
      // PrivateTmp= adds /var/tmp on its own; the rest is what the unit file says.
      requiresMountsFor: values('RequiresMountsFor').map((v) => v.replace(/ \(.*\)$/, '')).filter((v) => v !== '/var/tmp'),
      bindPaths: values('BindPaths'),
      bindReadOnlyPaths: values('BindReadOnlyPaths'),
      warnings: r.stderr,
    });
  }
  return out;
}

/** Undoes systemd's quote_command_line(): words joined by spaces, "…" with \-escapes (\n and \t for newline and tab). */
function unquoteCommandLine(s: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < s.length) {
    let w = '';
    if (s[i] === '"') {
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\') {
          i++;
          w += s[i] === 'n' ? '\n' : s[i] === 't' ? '\t' : s[i];
        } else w += s[i];
        i++;
      }
      i++;
    } else {
      while (i < s.length && s[i] !== ' ') w += s[i++];
    }
    words.push(w);
    i++;
  }
  return words;
}

/** systemd's run-time expansion of ExecStart= words: $$ is a literal $, ${NAME} and a whole-word $NAME are variables. */
function expandAtRun(word: string): string | null {
  if (/^\$[A-Za-z_][A-Za-z0-9_]*$/.test(word)) return null;
  let out = '';
  for (let i = 0; i < word.length; i++) {
    if (word[i] !== '$') out += word[i];
    else if (word[i + 1] === '$') out += '$', i++;
    else if (word[i + 1] === '{') return null;
    else out += '$';
  }
  return out;
}

export interface KeyfileValues {
  ssid: string | undefined;
  psk: string | undefined;
}

function keyfileLines(text: string): KeyfileValues {
  const get = (group: string, key: string) => {
    const at = text.indexOf(`\n[${group}]\n`);
    if (at < 0) return undefined;
    const rest = text.slice(at + group.length + 4);
    const section = rest.slice(0, rest.search(/^\[/m) < 0 ? undefined : rest.search(/^\[/m));
    return section.split('\n').find((l) => l.startsWith(`${key}=`));
  };
  return { ssid: get('wifi', 'ssid'), psk: get('wifi-security', 'psk') };
}

function nmcli(args: string[], input?: string): string {
  const r = spawnSync('nmcli', ['--offline', '--show-secrets', ...args], { encoding: 'utf8', input });
  assert.equal(r.status, 0, `nmcli ${args.join(' ')}:\n${r.stderr}`);
  return r.stdout;
}

/**
 * NetworkManager's own reading of a keyfile, as NetworkManager writes it back (nmcli --offline
 * reads a keyfile on stdin, applies a change and prints the result), beside NetworkManager's own
 * keyfile for the values themselves, given as arguments. The two agree byte for byte exactly
 * when NetworkManager read the values we meant.
 */
export function nmRead(keyfile: string, id: string, want: { ssid: string; psk: string | null }): { read: KeyfileValues; reference: KeyfileValues } {
  const read = keyfileLines(`\n${nmcli(['connection', 'modify', 'connection.id', id], keyfile)}`);
  const ref = ['connection', 'add', 'type', 'wifi', 'con-name', id, 'ssid', want.ssid];
  if (want.psk !== null) ref.push('wifi-sec.key-mgmt', 'wpa-psk', 'wifi-sec.psk', want.psk);
  return { read, reference: keyfileLines(`\n${nmcli(ref)}`) };
}
