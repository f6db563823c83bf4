/**
 * The Debian bootstrap recipe lives as plain files in image/debian/; its version is the hash of
 * those files, so editing the recipe invalidates every cached layer built from it.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** image/debian/ of this installation (works from src/ under tsx and from dist/src/ when built). */
export function recipeDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'image', 'debian');
    if (existsSync(join(candidate, 'packages'))) return candidate;
    dir = dirname(dir);
  }
  throw new Error('image/debian recipe not found next to the syncpi installation');
}

function walk(dir: string, out: string[]): void {
  for (const e of readdirSync(dir).sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else out.push(p);
  }
}

export function recipeVersion(dir = recipeDir()): string {
  const h = createHash('sha256');
  const files: string[] = [];
  walk(dir, files);
  for (const f of files) {
    h.update(relative(dir, f)).update('\0').update(readFileSync(f)).update('\0');
  }
  return h.digest('hex').slice(0, 16);
}

export function readList(path: string): string[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
}

/** Kernel flavour per architecture: the generic arm64 kernel, and LPAE armmp for a Pi 2/3 in 32-bit. */
export const KERNEL_PACKAGE: Record<'arm64' | 'armhf', string> = {
  arm64: 'linux-image-arm64',
  armhf: 'linux-image-armmp-lpae',
};

export function basePackages(arch: 'arm64' | 'armhf', dir = recipeDir()): string[] {
  return [...readList(join(dir, 'packages')), KERNEL_PACKAGE[arch]];
}
