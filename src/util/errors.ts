/**
 * Two kinds of error reach the user. A UserError is bad input (config, flags, a refused device):
 * one line, exit code 2, no stack. A Failure is something that went wrong while doing the work:
 * exit code 1. Anything else is a bug and prints its stack (always with --debug).
 */
export class UserError extends Error {
  readonly exitCode = 2;
  /** Extra lines (e.g. every config error at once) printed after the message. */
  readonly details: string[];
  constructor(message: string, details: string[] = []) {
    super(message);
    this.name = 'UserError';
    this.details = details;
  }
}

export class Failure extends Error {
  readonly exitCode = 1;
  readonly details: string[];
  constructor(message: string, details: string[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Failure';
    this.details = details;
  }
}

/** Exit code of a check (`provision --check`, `fleet check`) that ran fine and found drift: scripts and monitors can tell it from a failure. */
export const EXIT_DRIFT = 3;
