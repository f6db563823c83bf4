/**
 * The kernel's own split of a command line, ported from next_arg() and parse_args() in
 * kernel/params.c (Linux 6.12): words end at white space outside double quotes; a leading quote
 * of the word or of its value is dropped with the word's last character when that is a quote;
 * "--" ends the kernel's parameters (the rest is init's).
 */
const isspace = (c: string | undefined): boolean => c !== undefined && ' \t\n\v\f\r'.includes(c);

export interface KernelArg {
  param: string;
  val: string | null;
}

export function kernelArgs(cmdline: string): { params: KernelArg[]; init: string } {
  const s = cmdline;
  let at = 0;
  const skip = (): void => {
    while (at < s.length && isspace(s[at])) at++;
  };
  skip();
  const params: KernelArg[] = [];
  while (at < s.length) {
    let start = at;
    let inQuote = false;
    let quoted = false;
    if (s[start] === '"') {
      start++;
      inQuote = true;
      quoted = true;
    }
    let i = 0;
    let equals = 0;
    for (; start + i < s.length; i++) {
      const c = s[start + i]!;
      if (isspace(c) && !inQuote) break;
      if (equals === 0 && c === '=') equals = i;
      if (c === '"') inQuote = !inQuote;
    }
    // the C code writes NULs into the word; model the word as characters with an end marker each
    const word = s.slice(start, start + i).split('');
    const nul = new Set<number>();
    let val: number | null = null;
    if (equals) {
      nul.add(equals);
      val = equals + 1;
      if (word[val] === '"') {
        val++;
        if (word[i - 1] === '"') nul.add(i - 1);
      }
    }
    if (quoted && i > 0 && word[i - 1] === '"') nul.add(i - 1);
    const cstr = (from: number): string => {
      let out = '';
      for (let k = from; k < word.length && !nul.has(k); k++) out += word[k];
      return out;
    };
    const param = cstr(0);
    at = start + i + (start + i < s.length ? 1 : 0);
    skip();
    if (val === null && param === '--') return { params, init: s.slice(at) };
    params.push({ param, val: val === null ? null : cstr(val) });
  }
  return { params, init: '' };
}
