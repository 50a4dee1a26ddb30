/**
 * The base of every error vnum raises on purpose, and the FastAGI wire's own.
 *
 * One family: each error carries a stable `code` (`VNUM_…`, `AGI_…`, `AMI_…`)
 * that a face maps to what it shows (an exit code, an HTTP status) through
 * the code's category (src/errors.ts). The base lives here, at the bottom of
 * the house, because agi/ imports nothing from src/.
 */
export class CodedError<Code extends string = string> extends Error {
  readonly code: Code;
  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

export type AgiErrorCode =
  | 'AGI_LINE_TOO_LONG'
  | 'AGI_ENV_TOO_LARGE'
  | 'AGI_BAD_ENV_LINE'
  | 'AGI_BAD_REPLY'
  | 'AGI_UNEXPECTED_LINE'
  | 'AGI_NOT_READY'
  | 'AGI_TIMEOUT'
  | 'AGI_CLOSED'
  | 'AGI_BAD_ARGUMENT';

export class AgiError extends CodedError<AgiErrorCode> {}

export function isAgiError(e: unknown, code?: AgiErrorCode): e is AgiError {
  return e instanceof AgiError && (code === undefined || e.code === code);
}
