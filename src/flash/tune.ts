/**
 * Keep the kernel from buffering gigabytes for a slow card: with the device's share of the dirty
 * page cache capped (bdi max_ratio 1%, as bmaptool does), writeback starts at once and overlaps
 * our writes instead of piling up behind the final fsync, and the rest of the system stays
 * responsive. The old value is restored afterwards; without sysfs access nothing changes.
 */
import { readFileSync, writeFileSync } from 'node:fs';

/** `majMin`: the device number of the opened destination ("major:minor"). */
export function limitDirtyCache(majMin: string): () => void {
  let path: string;
  let old: string;
  try {
    path = `/sys/dev/block/${majMin}/bdi/max_ratio`;
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
