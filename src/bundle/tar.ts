/**
 * A minimal, deterministic ustar writer: the bundle goes to a target as one tar stream that
 * Debian's own tar (Essential) unpacks. Fixed owner (root), fixed mtime (0) and entries in the
 * given order, so the same bundle is always the same bytes.
 */
export interface TarEntry {
  /** Relative path; directories end with "/". Short names only (< 100 bytes). */
  path: string;
  mode: number;
  content?: Buffer;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function header(entry: TarEntry, size: number): Buffer {
  const h = Buffer.alloc(512, 0);
  const name = Buffer.from(entry.path, 'utf8');
  if (name.length >= 100) throw new Error(`internal: tar entry name too long: ${entry.path}`);
  const isDir = entry.path.endsWith('/');
  name.copy(h, 0);
  h.write(octal(entry.mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(0, 12), 136, 'ascii'); // mtime
  h.write('        ', 148, 'ascii'); // checksum placeholder
  h.write(isDir ? '5' : '0', 156, 'ascii');
  h.write('ustar\u000000', 257, 'ascii');
  h.write('root', 265, 'ascii');
  h.write('root', 297, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return h;
}

export function tarBytes(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const content = e.path.endsWith('/') ? Buffer.alloc(0) : (e.content ?? Buffer.alloc(0));
    parts.push(header(e, content.length), content);
    const pad = (512 - (content.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(1024, 0));
  return Buffer.concat(parts);
}
