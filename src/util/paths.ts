/**
 * Where the package's data folders (templates/, provision/, image/) are: found by walking up to
 * package.json, so the same code works from src/ under tsx and from dist/src/ when compiled.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'templates'))) return (root = dir);
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the syncpi package root (package.json with templates/)');
    dir = up;
  }
}

export const templatesDir = (): string => join(packageRoot(), 'templates');
export const provisionDir = (): string => join(packageRoot(), 'provision');
