/** Every feature phase run in e2e-sync's first boot, in this order. */
import type { Phase } from './context.js';
import { rsyncPhase } from './rsync.js';

export const PHASES: Phase[] = [rsyncPhase];
