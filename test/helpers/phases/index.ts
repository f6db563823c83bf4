/** Every feature phase run in e2e-sync's first boot, in this order. */
import type { Phase } from './context.js';
import { webdav } from './webdav.js';

export const PHASES: Phase[] = [webdav];
