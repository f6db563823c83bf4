/**
 * Reading appliance.yaml (and fleet inventories): bytes → YAML document with positions → schema.
 * Every problem is collected with file:line:col and the key path, and all are reported at once.
 * Hostile input is bounded before it can cost anything: size, encoding, alias expansion, depth.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve, relative } from 'node:path';
import { isMap, isScalar, isSeq, isPair, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { UserError } from '../util/errors.js';
import { ownUnitTakenBy } from '../plan/own-units.js';
import { ConfigSchema, withReferenceDir, type Config } from './schema.js';
import { didYouMean } from './validators.js';

export const MAX_CONFIG_BYTES = 1024 * 1024;
export const MAX_DEPTH = 32;
const MAX_ALIASES = 100;

export interface ConfigProblem {
  file: string;
  line: number;
  col: number;
  path: string;
  message: string;
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

export class ConfigError extends UserError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    const lines = problems.map(formatProblem);
    super(lines.length === 1 ? lines[0]! : `${lines.length} problems in ${problems[0]?.file ?? 'config'}:`, lines.length === 1 ? [] : lines);
    this.problems = problems;
  }
}

export interface LoadedYaml {
  file: string;
  /** The file as shown in messages: relative to the working directory when shorter. */
  shownAs: string;
  doc: Document.Parsed;
  lines: LineCounter;
  data: unknown;
}

/** Offset of the first byte that does not start or continue a valid UTF-8 sequence. */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    const len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (len === 0) return i;
    for (let k = 1; k < len; k++) if (i + k >= b.length || (b[i + k]! & 0xc0) !== 0x80) return i;
    i += len;
  }
  return b.length;
}

function displayName(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && rel.length < file.length ? rel : file;
}

function pathString(path: readonly PropertyKey[]): string {
  let out = '';
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out ? `.${String(k)}` : String(k);
  }
  return out;
}

/** The node (or, for a missing key, the nearest existing parent) at a key path. */
function locate(doc: Document.Parsed, path: readonly PropertyKey[], wantKey = false): Node | null {
  let node: unknown = doc.contents;
  let last: Node | null = (doc.contents as Node | null) ?? null;
  for (let i = 0; i < path.length; i++) {
    const k = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(k));
      if (!pair) return last;
      if (wantKey && i === path.length - 1 && isScalar(pair.key)) return pair.key as Node;
      node = pair.value;
    } else if (isSeq(node) && typeof k === 'number') {
      node = node.items[k];
    } else {
      return last;
    }
    if (node && typeof node === 'object' && 'range' in (node as object)) last = node as Node;
  }
  return last;
}

/**
 * The key path of the deepest node at a byte offset (a syntax error's position), so every YAML
 * error names the key it is about. A duplicate key's offset is the key itself; other errors sit
 * at the end of the collection they break (an unclosed [ ends where the next key starts), so
 * the collection that ends there wins over the key that starts there.
 */
function pathAtOffset(doc: Document.Parsed, offset: number, onKey: boolean): PropertyKey[] {
  const path: PropertyKey[] = [];
  const inside = (n: unknown): boolean => {
    const r = (n as Node | null)?.range;
    return !!r && r[0] < offset && offset <= r[2];
  };
  const startsAt = (n: unknown): boolean => (n as Node | null)?.range?.[0] === offset;
  const keyOf = (p: { key: unknown }): string => String((p.key as { value: unknown }).value);
  let node: unknown = doc.contents;
  for (;;) {
    if (isMap(node)) {
      const key = node.items.find((p) => isScalar(p.key) && startsAt(p.key));
      if (key && onKey) return [...path, keyOf(key)];
      const value = node.items.find((p) => isScalar(p.key) && inside(p.value));
      if (value) {
        path.push(keyOf(value));
        node = value.value;
        continue;
      }
      return key ? [...path, keyOf(key)] : path;
    }
    if (isSeq(node)) {
      const i = node.items.findIndex((item) => inside(item) || startsAt(item));
      if (i < 0) return path;
      path.push(i);
      node = node.items[i];
      continue;
    }
    return path;
  }
}

/** Where the first pair with this key sits in the mapping that holds `path`. */
function firstKeyPos(doc: Document.Parsed, lines: LineCounter, path: readonly PropertyKey[]): string {
  const node = locate(doc, path, true);
  const p = posOf(lines, node);
  return `${p.line}:${p.col}`;
}

function posOf(lines: LineCounter, node: Node | null | undefined): { line: number; col: number } {
  const offset = node?.range?.[0] ?? 0;
  return lines.linePos(offset);
}

function depthOf(node: unknown, depth = 0): number {
  if (depth > MAX_DEPTH) return depth;
  if (isMap(node) || isSeq(node)) {
    let max = depth;
    for (const item of node.items as unknown[]) {
      const child = isPair(item) ? item.value : item;
      max = Math.max(max, depthOf(child, depth + 1));
      if (max > MAX_DEPTH) break;
    }
    return max;
  }
  return depth;
}

/** Reads and parses a YAML file, or throws a ConfigError with every syntax problem. */
export function readYaml(path: string): LoadedYaml {
  const file = resolve(path);
  const shownAs = displayName(file);
  const fail = (message: string, line = 1, col = 1): never => {
    throw new ConfigError([{ file: shownAs, line, col, path: '', message }]);
  };
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) fail('not a regular file; expected a YAML file such as image/appliance.yaml');
    size = st.size;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new UserError(`${shownAs}: cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}; expected a readable YAML file`);
  }
  if (size > MAX_CONFIG_BYTES) fail(`file is ${size} bytes; expected at most ${MAX_CONFIG_BYTES} bytes`);
  const bytes = readFileSync(file);
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const bad = firstInvalidUtf8(bytes);
    const before = bytes.subarray(0, bad).toString('latin1');
    const line = before.split('\n').length;
    fail(`not valid UTF-8 (byte 0x${bytes[bad]?.toString(16) ?? '??'} at offset ${bad}); expected a UTF-8 text file`, line, bad - before.lastIndexOf('\n'));
  }
  if (text.includes('\0')) fail('contains a NUL byte; expected a text file');
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, strict: true, version: '1.2' });
  const problems: ConfigProblem[] = [];
  for (const err of doc.errors) {
    const pos = lines.linePos(err.pos[0]);
    const duplicate = err.code === 'DUPLICATE_KEY';
    const path = pathAtOffset(doc, err.pos[0], duplicate);
    const msg =
      duplicate && path.length > 0
        ? `duplicate key ${JSON.stringify(String(path[path.length - 1]))} (first at ${firstKeyPos(doc, lines, path)}); expected each key once per mapping`
        : err.message.split('\n')[0]!;
    problems.push({ file: shownAs, line: pos.line, col: pos.col, path: pathString(path), message: msg });
  }
  if (problems.length) throw new ConfigError(problems);
  if (depthOf(doc.contents) > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH} levels; expected a flat appliance description`);
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (e) {
    fail(`${(e as Error).message.split('\n')[0]}; expected aliases to expand to a bounded size`);
  }
  return { file, shownAs, doc, lines, data };
}

/** Zod's schema shape at a path, to suggest sibling keys for a typo. */
function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  type Def = { type: string; innerType?: z.ZodType; shape?: Record<string, z.ZodType>; element?: z.ZodType; options?: z.ZodType[]; valueType?: z.ZodType; in?: z.ZodType };
  const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;
  const unwrap = (s: z.ZodType): z.ZodType[] => {
    const d = defOf(s);
    if (d.type === 'optional' || d.type === 'default' || d.type === 'nullable' || d.type === 'prefault') return unwrap(d.innerType!);
    if (d.type === 'pipe') return unwrap(d.in!);
    if (d.type === 'union') return d.options!.flatMap(unwrap);
    return [s];
  };
  let current = unwrap(schema);
  for (const k of path) {
    const next: z.ZodType[] = [];
    for (const s of current) {
      const d = defOf(s);
      if (d.type === 'object' && d.shape && typeof k === 'string' && d.shape[k]) next.push(...unwrap(d.shape[k]!));
      else if (d.type === 'array' && typeof k === 'number') next.push(...unwrap(d.element!));
      else if (d.type === 'record' && typeof k === 'string') next.push(...unwrap(d.valueType!));
    }
    current = next;
  }
  return current.flatMap((s) => {
    const d = defOf(s);
    return d.type === 'object' && d.shape ? Object.keys(d.shape) : [];
  });
}

function describeInput(input: unknown): string {
  if (input === undefined) return 'nothing';
  if (typeof input === 'string') {
    const shown = input.length > 80 ? `${input.slice(0, 77)}…` : input;
    return JSON.stringify(shown);
  }
  if (typeof input === 'number' || typeof input === 'boolean' || input === null) return String(input);
  if (Array.isArray(input)) return 'a list';
  return 'a mapping';
}

export function issuesToProblems(loaded: LoadedYaml, issues: readonly z.core.$ZodIssue[], schema: z.ZodType, prefix: PropertyKey[] = []): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const seen = new Set<string>();
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, issue.path);
      for (const key of issue.keys) {
        const node = locate(loaded.doc, [...path, key], true);
        const pos = posOf(loaded.lines, node);
        const hint = didYouMean(key, known);
        out.push({
          file: loaded.shownAs, ...pos, path: pathString([...path, key]),
          message: `unknown key${hint ? `; did you mean "${hint}"?` : known.length ? `; expected one of: ${known.join(', ')}` : ''}`,
        });
      }
      continue;
    }
    if (issue.code === 'invalid_union') {
      // Report the branch that got furthest, rather than "invalid input" for the union as a whole.
      const branches = (issue as unknown as { errors: z.core.$ZodIssue[][] }).errors;
      // A branch that rejects the input's very type (a key line given a mapping) got nowhere.
      const wrongType = (b: z.core.$ZodIssue[]): boolean => b.length === 1 && b[0]!.code === 'invalid_type' && b[0]!.path.length === 0;
      if (branches.some((b) => !wrongType(b))) branches.splice(0, branches.length, ...branches.filter((b) => !wrongType(b)));
      const allUnknown = branches.every((b) => b.some((i) => i.code === 'unrecognized_keys'));
      // Every branch rejects a key: the key is the problem, not what each branch then misses.
      const best = allUnknown
        ? branches[0]!.filter((i) => i.code === 'unrecognized_keys')
        : branches.slice().sort((a, b) => a.length - b.length).find((b) => b.every((i) => i.code !== 'unrecognized_keys'))
          ?? branches.slice().sort((a, b) => a.length - b.length)[0];
      if (best) {
        out.push(...issuesToProblems(loaded, best.map((i) => ({ ...i, path: [...issue.path, ...i.path] })), schema, prefix));
        continue;
      }
    }
    if (issue.code === 'invalid_key') {
      const key = String(path[path.length - 1]);
      const inner = (issue as unknown as { issues: z.core.$ZodIssue[] }).issues[0];
      const pos = posOf(loaded.lines, locate(loaded.doc, path, true));
      out.push({ file: loaded.shownAs, ...pos, path: pathString(path), message: `got ${describeInput(key)}; ${inner?.message ?? 'expected a valid key'}` });
      continue;
    }
    const node = locate(loaded.doc, path);
    const pos = posOf(loaded.lines, node);
    let message = issue.message;
    const input = (issue as { input?: unknown }).input;
    if (issue.code === 'invalid_type') {
      const expected = ({ array: 'a list', object: 'a mapping', string: 'text', number: 'a number', boolean: 'true or false' } as Record<string, string>)[issue.expected] ?? issue.expected;
      message = input === undefined ? `missing; expected ${expected}` : `got ${describeInput(input)}; expected ${expected}`;
    } else if (issue.code === 'invalid_value') {
      const values = (issue as unknown as { values: unknown[] }).values.map((x) => JSON.stringify(x));
      const hint = typeof input === 'string' ? didYouMean(input, values.map((x) => JSON.parse(x) as string).filter((x) => typeof x === 'string')) : null;
      message = `got ${describeInput(input)}; expected ${values.length === 1 ? values[0] : `one of ${values.join(', ')}`}${hint ? ` (did you mean "${hint}"?)` : ''}`;
    } else if (input !== undefined && !message.startsWith('got ')) {
      message = `got ${describeInput(input)}; ${message.startsWith('expected') ? message : `expected ${message.replace(/^Invalid input: ?/, '')}`}`;
    }
    const key = `${pos.line}:${pos.col}:${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ file: loaded.shownAs, ...pos, path: pathString(path), message });
  }
  return out.sort((a, b) => a.line - b.line || a.col - b.col);
}

/** A problem found after the schema (secrets, plan-level rules), placed at its key in the file. */
export function problemAt(loaded: LoadedYaml, path: readonly PropertyKey[], message: string, atKey = false): ConfigProblem {
  return { file: loaded.shownAs, ...posOf(loaded.lines, locate(loaded.doc, path, atKey)), path: pathString(path), message };
}

export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file it came from; relative references resolve against its folder. */
  file: string;
  dir: string;
  yaml: LoadedYaml;
}

export function parseConfigData(loaded: LoadedYaml): Config {
  if (loaded.data === null || typeof loaded.data !== 'object' || Array.isArray(loaded.data)) {
    throw new ConfigError([{ file: loaded.shownAs, line: 1, col: 1, path: '', message: 'expected a mapping at the top level (keys such as system:, sync:, drive:)' }]);
  }
  const result = withReferenceDir(dirname(loaded.file), () => ConfigSchema.safeParse(loaded.data, { reportInput: true }));
  if (!result.success) throw new ConfigError(issuesToProblems(loaded, result.error.issues, ConfigSchema));
  const problems = Object.keys(result.data.services).flatMap((name): ConfigProblem[] => {
    const unit = ownUnitTakenBy(name);
    return unit ? [problemAt(loaded, ['services', name], `got ${JSON.stringify(name)}; expected another service name: ${unit} is one of syncpi's own units`, true)] : [];
  });
  if (problems.length) throw new ConfigError(problems);
  return result.data;
}

export function loadConfig(path: string): LoadedConfig {
  const yaml = readYaml(path);
  const config = parseConfigData(yaml);
  return { config, file: yaml.file, dir: dirname(yaml.file), yaml };
}
