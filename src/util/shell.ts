/**
 * The one function that quotes a value for a POSIX shell. Every value that reaches a shell on a
 * target goes through here; locally we never build shell strings (execa with argv arrays).
 */
export function shq(value: string): string {
  if (value.includes('\0')) throw new Error('cannot pass a NUL byte through a shell');
  if (value !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function shJoin(argv: readonly string[]): string {
  return argv.map(shq).join(' ');
}
