#!/usr/bin/env node
// Runs the benchmarks in bench/ (scripts that print figures, not tests):
//   npm run bench                      lists them, with what each measures
//   npm run bench -- NAME [ARGS...]    runs bench/NAME.mjs with ARGS (e.g. `npm run bench -- flash --runs 3`)
// They are heavy (image builds, QEMU boots, many test hosts) and most need root, so none runs
// unasked. Each runs with tsx loaded, since some import the TypeScript sources directly.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';

const ROOT = resolve(import.meta.dirname, '..');
const BENCH = join(ROOT, 'bench');

/** Every benchmark: its name and the header comment that says what it measures. */
function benchmarks() {
  return readdirSync(BENCH)
    .filter((f) => f.endsWith('.mjs'))
    .sort()
    .map((f) => {
      const lines = readFileSync(join(BENCH, f), 'utf8').split('\n');
      const header = [];
      for (const l of lines.slice(lines[0]?.startsWith('#!') ? 1 : 0)) {
        if (!l.startsWith('//')) break;
        header.push(l.replace(/^\/\/ ?/, ''));
      }
      return { name: f.replace(/\.mjs$/, ''), file: join(BENCH, f), header };
    });
}

const [name, ...args] = process.argv.slice(2);
const all = benchmarks();
if (!name) {
  console.log('benchmarks (run one with `npm run bench -- NAME [ARGS...]`):\n');
  for (const b of all) console.log(`${b.name}\n${b.header.map((l) => `  ${l}`).join('\n')}\n`);
  process.exit(0);
}
const bench = all.find((b) => b.name === name);
if (!bench) {
  console.error(`no benchmark "${name}" in bench/ (valid: ${all.map((b) => b.name).join(', ')})`);
  process.exit(2);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', bench.file, ...args], { cwd: ROOT, stdio: 'inherit' });
if (r.error) {
  console.error(`cannot run ${bench.file}: ${r.error.message}`);
  process.exit(1);
}
process.exit(r.status ?? 1);
