/** Checks of command-line values that are not the commands' own. */
import { UserError } from '../util/errors.js';

export function parsePositiveInt(name: string, v: string, max = 100000): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) throw new UserError(`${name} ${JSON.stringify(v)}: expected a whole number from 1 to ${max}`);
  return Number(v);
}
