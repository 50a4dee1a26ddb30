import type { Logger } from 'pino';
import { createLogger } from '../../src/log.js';

export interface CapturedLog {
  logger: Logger;
  lines: string[];
  records(): Array<Record<string, unknown>>;
}

/** A logger whose lines land in memory. `redact: false` turns off src/log.ts's backstop to check our own redaction. */
export function captureLog(options: { redact?: boolean; level?: string; now?: () => number } = {}): CapturedLog {
  const lines: string[] = [];
  const logger = createLogger({
    level: options.level ?? 'debug',
    redact: options.redact ?? true,
    ...(options.now ? { now: options.now } : {}),
    destination: { write: (line: string) => void lines.push(line) },
  });
  return { logger, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}
