/**
 * Running a short host tool (lsblk, sfdisk, mtools, mke2fs…) and collecting its output. Plain
 * spawn rather than execa: flash's time to first write is a benchmark figure and loading execa
 * costs about 70 ms. Errors carry what callers look at: `code` 'ENOENT' when the tool is
 * missing, else `exitCode` and `stderr`. util/tool.ts turns them into user-facing Failures.
 */
import { spawn } from 'node:child_process';

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class RunError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly exitCode: number | undefined,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** Output is limited to what these tools print (lsblk of a large machine stays far below). */
const MAX_OUTPUT = 64 << 20;

export function run(cmd: string, args: readonly string[], opts: { env?: Record<string, string>; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: opts.env ? { ...process.env, ...opts.env } : process.env });
    if (opts.input !== undefined) {
      // A tool that exits without reading all of its input is judged by its exit code, not by EPIPE.
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(opts.input);
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    const collect = (into: Buffer[]) => (c: Buffer): void => {
      size += c.length;
      if (size > MAX_OUTPUT) {
        child.kill();
        return;
      }
      into.push(c);
    };
    child.stdout!.on('data', collect(out));
    child.stderr!.on('data', collect(err));
    child.on('error', (e: NodeJS.ErrnoException) => reject(new RunError(`${cmd}: ${e.message}`, e.code, undefined, '', '')));
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8').replace(/\n$/, '');
      const stderr = Buffer.concat(err).toString('utf8').replace(/\n$/, '');
      if (code === 0) resolve({ stdout, stderr });
      else {
        const why = size > MAX_OUTPUT ? `printed more than ${MAX_OUTPUT} bytes` : signal ? `killed by ${signal}` : `exit ${code}`;
        reject(new RunError(`${cmd} ${args.join(' ')}: ${why}${stderr ? `: ${stderr.split('\n')[0]}` : ''}`, undefined, code ?? undefined, stdout, stderr));
      }
    });
  });
}
