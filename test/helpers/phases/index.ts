/** Every feature phase run in e2e-sync's first boot, in this order. */
import type { Phase } from './context.js';
import { webdav } from './webdav.js';
import { readers } from './readers.js';
import { versions } from './versions.js';
import { rsyncPhase } from './rsync.js';

// web access reads the laptop's first file, which the versions phase leaves in place
export const PHASES: Phase[] = [webdav, versions, readers, rsyncPhase];
