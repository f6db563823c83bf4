/**
 * Syncthing device IDs, read the way Syncthing reads them: 32 bytes in base32 (52 characters),
 * each group of 13 followed by a Luhn mod-32 check character (56), shown as 8 groups of 7 with
 * dashes. A pasted ID may be lower case, use spaces or no dashes, or hold the digits 0, 1, 8 that
 * Syncthing reads as O, I, B; all of these name the same device and normalise to one spelling.
 * Unlike Syncthing we refuse the old 52-character form: it has no check characters to catch a typo.
 */

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * Syncthing's check character for 13 base32 characters. Not the textbook Luhn: the factor
 * alternates starting at 1 from the left, and each product is folded as (p / 32) + (p % 32).
 */
export function luhn32(s: string): string {
  let factor = 1;
  let sum = 0;
  for (const ch of s) {
    const cp = B32.indexOf(ch);
    if (cp < 0) throw new Error(`luhn32: ${JSON.stringify(ch)} is not base32`);
    const p = factor * cp;
    factor = factor === 2 ? 1 : 2;
    sum += Math.floor(p / 32) + (p % 32);
  }
  return B32[(32 - (sum % 32)) % 32]!;
}

export const DEVICE_ID_EXPECTED = 'a Syncthing device ID: 8 groups of 7 characters A–Z 2–7 (dashes or spaces between them optional), as Syncthing shows under Actions → Show ID';

export type DeviceIdResult = { id: string } | { problem: string };

/** The canonical ID (8 dash-separated groups, upper case) of a pasted one, or what is wrong with it. */
export function normaliseDeviceId(input: string): DeviceIdResult {
  const raw = input.trim().replace(/=+$/, '').toUpperCase().replace(/0/g, 'O').replace(/1/g, 'I').replace(/8/g, 'B').replace(/[- ]/g, '');
  if (raw.length === 52) return { problem: `${DEVICE_ID_EXPECTED}; this is the old form without check characters (52), which cannot catch a typo` };
  if (raw.length !== 56) return { problem: `${DEVICE_ID_EXPECTED}; this has ${raw.length} characters besides dashes and spaces, not 56` };
  const bad = [...raw].find((c) => !B32.includes(c));
  if (bad !== undefined) return { problem: `${DEVICE_ID_EXPECTED}; ${JSON.stringify(bad)} is not one of them` };
  for (let i = 0; i < 4; i++) {
    if (luhn32(raw.slice(i * 14, i * 14 + 13)) !== raw[i * 14 + 13]) {
      return { problem: `${DEVICE_ID_EXPECTED}; check character ${i + 1} (group ${2 * i + 2}, last character) does not match: a typo?` };
    }
  }
  return { id: raw.match(/.{7}/g)!.join('-') };
}
