/**
 * The one error a verification raises: which range of the write plan differs, where, and the
 * digests that disagree. Callers and `--json` readers get the fields, not only a sentence, so a
 * script can tell a faulty card (the medium differs from the image) from a corrupt download (the
 * image differs from its bmap) and point at the exact bytes.
 */
import { Failure } from '../util/errors.js';
import type { WritePlan } from './source.js';

export interface ChecksumMismatch {
  /** What was found wrong: the medium read back, or the image checked against its bmap. */
  subject: 'medium' | 'image';
  /** Index of the range in the write plan (the bmap's Range elements, in order). */
  range: number;
  firstBlock: number;
  lastBlock: number;
  /**
   * First byte known to differ. For the medium, the first byte that differs from the image; for
   * the image against its bmap, the range's first byte (a digest cannot say which byte changed).
   */
  offset: number;
  /** The byte span [start, end) both digests cover. */
  start: number;
  end: number;
  /** SHA-256 the span must have, and the one it has. */
  expected: string;
  actual: string;
}

export class ChecksumVerificationError extends Failure implements ChecksumMismatch {
  readonly subject: ChecksumMismatch['subject'];
  readonly range: number;
  readonly firstBlock: number;
  readonly lastBlock: number;
  readonly offset: number;
  readonly start: number;
  readonly end: number;
  readonly expected: string;
  readonly actual: string;

  constructor(message: string, m: ChecksumMismatch) {
    super(message, [`range ${m.range} (blocks ${m.firstBlock}-${m.lastBlock}, bytes ${m.start}-${m.end}): expected sha256 ${m.expected}, read ${m.actual}`]);
    this.name = 'ChecksumVerificationError';
    this.subject = m.subject;
    this.range = m.range;
    this.firstBlock = m.firstBlock;
    this.lastBlock = m.lastBlock;
    this.offset = m.offset;
    this.start = m.start;
    this.end = m.end;
    this.expected = m.expected;
    this.actual = m.actual;
  }

  /** What `--json` prints for this error (see util/report.ts). */
  toJSON(): ChecksumMismatch & { name: string; message: string } {
    const { name, message, subject, range, firstBlock, lastBlock, offset, start, end, expected, actual } = this;
    return { name, message, subject, range, firstBlock, lastBlock, offset, start, end, expected, actual };
  }
}

/** The byte span of range `index` of the plan (the image's last block may be partial). */
export function rangeSpan(plan: WritePlan, index: number): { firstBlock: number; lastBlock: number; start: number; end: number } {
  const r = plan.ranges[index]!;
  return { firstBlock: r.first, lastBlock: r.last, start: r.first * plan.blockSize, end: Math.min((r.last + 1) * plan.blockSize, plan.imageSize) };
}

/** The image does not match its bmap: blamed on the image, never on the card. */
export function imageMismatch(imagePath: string, plan: WritePlan, range: number, expected: string, actual: string): ChecksumVerificationError {
  const span = rangeSpan(plan, range);
  return new ChecksumVerificationError(
    `${imagePath} does not match its bmap: blocks ${span.firstBlock}-${span.lastBlock} (offset ${span.start}) hold other data than the bmap says; the image is corrupt or the bmap belongs to another image`,
    { subject: 'image', range, ...span, offset: span.start, expected, actual },
  );
}
