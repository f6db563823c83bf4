/**
 * A Target is where a bundle is applied: an image's root filesystem (chroot) or a live host
 * (SSH). It needs one capability only — run a POSIX sh script as root with bytes on stdin — so an
 * apply is one upload and one run: the bundle travels as a tar stream on the script's stdin.
 */
export interface ScriptResult {
  /** null when the script was killed by a signal (or its channel closed without a status). */
  exitCode: number | null;
  signal?: string | null;
  stdout: string;
  stderr: string;
}

export interface RunScriptOptions {
  /** Bytes fed to the script's stdin (the bundle tar). */
  stdin?: Buffer;
  /** Called for every complete stdout line as it arrives (progress). */
  onLine?: (line: string) => void;
}

export interface Target {
  /** For messages: "rootfs /mnt/x (arm64)", "pi@raspberrypi". */
  readonly name: string;
  /** chroot: an image being built (nothing runs, no services); live: a running host. */
  readonly env: 'chroot' | 'live';
  /** Run `script` with /bin/sh as root on the target. Never rejects on a non-zero exit. */
  runScript(script: string, opts?: RunScriptOptions): Promise<ScriptResult>;
}

/** Splits a byte stream into lines for RunScriptOptions.onLine. */
export function lineSplitter(onLine: (line: string) => void): { push(chunk: Buffer | string): void; end(): void } {
  let buf = '';
  return {
    push(chunk) {
      buf += chunk.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    },
    end() {
      if (buf) onLine(buf);
      buf = '';
    },
  };
}
