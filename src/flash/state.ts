/**
 * A record of each write per device, kept outside the card: "writing" is recorded before the
 * first byte goes out and replaced only when the write (and verification) finished. A write that
 * was killed leaves "writing" behind, so the next run can say the card is incomplete instead of
 * letting anyone assume it was done. The card itself also shows it: it has no partition table
 * (see write.ts).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export type FlashStatus = 'writing' | 'written' | 'verified' | 'failed';

export interface FlashRecord {
  device: string;
  /** Identity of the medium, so a record does not follow a device name to another card. */
  identity: string;
  image: string;
  status: FlashStatus;
  startedAt: string;
  updatedAt: string;
  detail?: string;
}

export function stateDir(): string {
  if (process.env.SYNCPI_STATE_DIR) return process.env.SYNCPI_STATE_DIR;
  const base = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'syncpi');
}

const file = (): string => join(stateDir(), 'flash.json');

export function readRecords(): Record<string, FlashRecord> {
  try {
    return JSON.parse(readFileSync(file(), 'utf8')) as Record<string, FlashRecord>;
  } catch {
    return {};
  }
}

export function lastRecord(device: string): FlashRecord | undefined {
  return readRecords()[device];
}

/** Store the record atomically (temp file + rename): a crash never leaves a torn state file. */
export function record(rec: FlashRecord): void {
  const all = readRecords();
  all[rec.device] = { ...rec, updatedAt: new Date().toISOString() };
  mkdirSync(stateDir(), { recursive: true });
  const tmp = `${file()}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(all, null, 2) + '\n', { mode: 0o644 });
  renameSync(tmp, file());
}
