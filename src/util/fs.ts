import { lstatSync } from 'node:fs';

/** True when something is at PATH, a dangling link included (existsSync follows links). */
export function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
