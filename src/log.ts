import pino, { type Logger, type DestinationStream } from 'pino';

/**
 * Logging: pino JSON on stderr. Real numbers never reach a log line in full:
 * every run of 7+ digits (optionally after '+', digits possibly separated by
 * spaces, dots, dashes or brackets) keeps only its last 4 digits. This runs on
 * the serialised line, so it covers messages, fields, errors and stack traces
 * at every level. ISO timestamps and dotted IPv4 addresses are left alone;
 * pid and hostname are left out.
 */

// An ISO timestamp or an IPv4 address (kept), or a number-like run (redacted).
const NUMBER_LIKE =
  /(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z|(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.]))|\+?\d(?:[\s().-]{0,2}\d){6,}/g;

/** `+447700900123` -> `+********0123`: the shape stays, the identity goes. */
export function redactNumber(text: string): string {
  return text.replace(NUMBER_LIKE, (match, kept: string | undefined) => {
    if (kept) return match;
    let keep = 4;
    let out = '';
    for (let i = match.length - 1; i >= 0; i--) {
      const ch = match[i]!;
      if (ch >= '0' && ch <= '9') {
        out = (keep > 0 ? ch : '*') + out;
        keep--;
      } else {
        out = ch + out;
      }
    }
    return out;
  });
}

export interface LogOptions {
  level?: string;
  /** false only when the operator asks for it (VNUM_LOG_REDACT=off). */
  redact?: boolean;
  destination?: DestinationStream;
}

export function redactingStream(target: DestinationStream): DestinationStream {
  return { write: (line: string) => target.write(redactNumber(line)) };
}

export function createLogger(options: LogOptions = {}): Logger {
  const target = options.destination ?? pino.destination({ fd: 2, sync: true });
  const redact = options.redact ?? process.env.VNUM_LOG_REDACT !== 'off';
  return pino(
    {
      level: options.level ?? process.env.VNUM_LOG_LEVEL ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    redact ? redactingStream(target) : target,
  );
}
