/**
 * Reads `strace -f -e trace=connect,sendto,sendmsg,bind` output and names every IP address a
 * process tried to reach that is not this machine's loopback: the evidence that a test stayed
 * hermetic. Attempts count as much as deliveries (a connect refused by an empty namespace still
 * shows that the program wanted out). bind is traced too, so a trace of a program that sends
 * nothing still shows that the tracing worked (its listening sockets).
 */
import { isIP } from 'node:net';

export const STRACE_NET = ['-f', '-qq', '-e', 'trace=connect,sendto,sendmsg,bind', '-e', 'signal=none'];

/** 127.0.0.0/8, ::1, the IPv4-mapped loopback, and the unspecified address (which means this host). */
export function isLoopback(addr: string): boolean {
  if (isIP(addr) === 4) return addr.startsWith('127.') || addr === '0.0.0.0';
  const a = addr.toLowerCase();
  return a === '::1' || a === '::' || /^::ffff:127\./.test(a) || a === '::ffff:0.0.0.0';
}

/** Each "ADDR:PORT" outside loopback that a connect or send shows, once, in order of first appearance. */
export function outsideAddresses(trace: string): string[] {
  const seen = new Set<string>();
  const re = /sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)|sin6_port=htons\((\d+)\),[^}]*?inet_pton\(AF_INET6, "([^"]+)"/g;
  const sends = trace.split('\n').filter((l) => /\b(connect|sendto|sendmsg)\(/.test(l)).join('\n');
  for (const m of sends.matchAll(re)) {
    const [addr, port] = m[2] !== undefined ? [m[2], m[1]] : [m[4]!, m[3]];
    if (!isLoopback(addr)) seen.add(addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);
  }
  return [...seen];
}
