import { describe, expect, it } from 'vitest';
import { createLogger, redactNumber } from '../../src/log.js';

function capture(level = 'trace', redact?: boolean) {
  const lines: string[] = [];
  const logger = createLogger({ level, redact, destination: { write: (line: string) => lines.push(line) } });
  return { logger, lines };
}

describe('log redaction', () => {
  it('keeps only the last 4 digits of anything shaped like a number', () => {
    expect(redactNumber('+447911123456')).toBe('+********3456');
    expect(redactNumber('call from 07911 123456 to 442079460001')).toBe('call from ***** **3456 to ********0001');
    expect(redactNumber('+44 (0)20-7946.0001')).toBe('+** (*)**-****.0001');
    expect(redactNumber('session order-12345 took 523 ms')).toBe('session order-12345 took 523 ms');
    expect(redactNumber('ends 2026-11-25T09:20:02.123Z')).toBe('ends 2026-11-25T09:20:02.123Z');
    expect(redactNumber('refused 192.168.100.200')).toBe('refused 192.168.100.200');
    expect(redactNumber('020.7946.0001')).toBe('***.****.0001');
  });

  it.each(['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const)('redacts at level %s in messages, fields and errors', (level) => {
    const { logger, lines } = capture();
    logger[level]({ caller: '+447911123456', nested: { to: '447400123456' }, err: new Error('no route for 07911123456') }, 'call from +447911123456');
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line).not.toMatch(/\d{5,}/);
    expect(line).toContain('3456');
    const parsed = JSON.parse(line);
    expect(parsed.caller).toBe('+********3456');
    expect(parsed.nested.to).toBe('********3456');
    expect(parsed.msg).toBe('call from +********3456');
    expect(Number.isNaN(Date.parse(parsed.time))).toBe(false);
  });

  it('can be turned off explicitly by the operator', () => {
    const { logger, lines } = capture('info', false);
    logger.info({ caller: '+447911123456' }, 'x');
    expect(JSON.parse(lines[0]!).caller).toBe('+447911123456');
  });
});
