/** Every feature phase run in e2e-sync's first boot, in this order. */
import type { Phase } from './context.js';
import { readers } from './readers.js';
import { versions } from './versions.js';

export const PHASES: Phase[] = [versions, readers];
