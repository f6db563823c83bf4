/**
 * Keep the kernel from buffering gigabytes for a slow card: with the device's share of the dirty
 * page cache capped (bdi max_ratio 1%, as bmaptool does), writeback starts at once and overlaps
 * our writes instead of piling up behind the final fsync, and the rest of the system stays
 * responsive. The old value is restored afterwards; without sysfs access nothing changes.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';

export async function limitDirtyCache(devicePath: string): Promise<() => void> {
  let path: string;
  let old: string;
  try {
    const rdev = statSync(devicePath).rdev;
    const major = Math.floor(rdev / 256) & 0xfff;
    const minor = (rdev & 0xff) | ((rdev >> 12) & ~0xff);
    path = `/sys/dev/block/${major}:${minor}/bdi/max_ratio`;
    old = readFileSync(path, 'utf8').trim();
    writeFileSync(path, '1');
  } catch {
    return () => undefined;
  }
  return () => {
    try {
      writeFileSync(path, old);
    } catch {
      // the device may be gone (card pulled); nothing to restore then
    }
  };
}
