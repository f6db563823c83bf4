/**
 * A folder's versioning as Syncthing's config.xml holds it: the versioner type, its parameters
 * (Syncthing's own names and units: maxAge in seconds, cleanoutDays in days), the clean-out
 * interval and where versions go. The versions live on the drive under syncpi's own directory,
 * never in the folder (where they would sync) nor on the SD card.
 */
import type { Versioning } from '../config/schema.js';

export interface SyncthingVersioning {
  /** Empty for none: Syncthing's "no versioning". */
  type: '' | 'staggered' | 'trashcan' | 'simple';
  params: { key: string; val: string }[];
  cleanup_interval: number;
  fs_path: string;
}

export function syncthingVersioning(v: Versioning, fsPath: string): SyncthingVersioning {
  switch (v.type) {
    case 'none':
      return { type: '', params: [], cleanup_interval: 3600, fs_path: '' };
    case 'staggered':
      return { type: 'staggered', params: [{ key: 'maxAge', val: String(v.max_age_days * 86400) }], cleanup_interval: v.cleanup_interval, fs_path: fsPath };
    case 'trashcan':
      return { type: 'trashcan', params: [{ key: 'cleanoutDays', val: String(v.cleanout_days) }], cleanup_interval: v.cleanup_interval, fs_path: fsPath };
    case 'simple':
      return { type: 'simple', params: [{ key: 'cleanoutDays', val: String(v.cleanout_days) }, { key: 'keep', val: String(v.keep) }], cleanup_interval: v.cleanup_interval, fs_path: fsPath };
  }
}
