import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, VnumError } from '../../src/errors.js';
import { createLogger, LINES_PER_MESSAGE_PER_SECOND, logLevelSetting, logRedactSetting, redactNumber, redactText } from '../../src/log.js';

/** The logger as vnum serve builds it, writing into an array: the lines exactly as they would reach stderr. */
function capture(level = 'trace', redact?: boolean) {
  const lines: string[] = [];
  const logger = createLogger({ level, redact, destination: { write: (line: string) => lines.push(line) } });
  return { logger, lines, record: (i = 0) => JSON.parse(lines[i]!) as Record<string, any> };
}

/** Every digit of any script in a text, as ASCII. */
function digitsOf(text: string): string {
  return [...text].filter((c) => /\p{Nd}/u.test(c)).map((c) => String((c.codePointAt(0)! - (/[0-9]/.test(c) ? 48 : zeroOf(c))) % 10)).join('');
}
const ZEROS = [0x30, 0x660, 0x6f0, 0x966, 0x9e6, 0xe50, 0xff10, 0x1d7ce];
function zeroOf(c: string): number {
  const cp = c.codePointAt(0)!;
  return ZEROS.filter((z) => z <= cp && cp < z + 10).at(-1) ?? cp;
}

describe('log redaction: identifiers intact', () => {
  it('keeps the session id, Asterisk uniqueid and channel an operator matches a line to a call by, in fields and in text', () => {
    const { logger, lines, record } = capture();
    logger.info(
      { session: 'order-1234567', uniqueid: '1732526400.17', channel: 'PJSIP/carrier-00000017', linkedid: 'pbx1-1732526400.16', db: '/var/lib/vnum-20261125/vnum.db' },
      'call 1732526400.17 on PJSIP/carrier-00000017 for session order-1234567 ended',
    );
    const line = record();
    expect(line).toMatchObject({
      session: 'order-1234567',
      uniqueid: '1732526400.17',
      channel: 'PJSIP/carrier-00000017',
      linkedid: 'pbx1-1732526400.16',
      db: '/var/lib/vnum-20261125/vnum.db',
      msg: 'call 1732526400.17 on PJSIP/carrier-00000017 for session order-1234567 ended',
    });
    // A numeric order id as the session id is still the operator's identifier.
    logger.info({ session: '20261125000123', actionId: '1795600000123' }, 'x');
    expect(JSON.parse(lines[1]!)).toMatchObject({ session: '20261125000123', actionId: '1795600000123' });
  });

  it('keeps ISO times, dates, IPv4 and IPv6 addresses with ports, and short counts', () => {
    for (const text of [
      'ends 2026-11-25T09:20:02.123Z',
      'on 2026-11-25 09:20:02',
      'refused 192.168.100.200:4573',
      'refused fd00:1234:5678:9abc::17',
      'took 523 ms, 12 calls',
    ]) {
      expect(redactText(text), text).toBe(text);
    }
  });
});

describe('log redaction: numbers hidden', () => {
  it('a number field keeps only its last 4 digits, whatever separators or script, at any depth', () => {
    const { logger, record } = capture();
    logger.warn(
      {
        caller: '+44/7400/000001',
        dialled: '٠٧٤٠٠٠٠٠٠٠١',
        target: '０７９１１１２３４５６',
        cli: '+44\u200b7911\u200b123456',
        nested: { deeper: [{ number: 447911123456 }, { maskedAs: '+44 (0)20-7946.0001' }] },
        parties: ['+447911000001', '+447911000002'],
      },
      'x',
    );
    const line = record();
    expect(line.caller).toBe('+**/****/**0001');
    expect(line.dialled).toBe('*******٠٠٠١');
    expect(line.target).toBe('*******３４５６');
    expect(line.cli).toBe('+**\u200b****\u200b**3456');
    expect(line.nested.deeper[0].number).toBe('********3456');
    expect(line.nested.deeper[1].maskedAs).toBe('+** (*)**-****.0001');
    expect(line.parties).toEqual(['+********0001', '+********0002']);
  });

  it('numbers in the message and in error text: other separators, other scripts, quoted echoes of input', () => {
    const { logger, record } = capture();
    const err = new VnumError(ErrorCode.InvalidNumber, 'invalid number "+44/7400/000001": only digits, a leading +, spaces, dots, dashes and brackets are allowed');
    logger.error({ err, reason: 'invalid number "٠٧٤٠٠٠٠٠٠٠١": it is not a phone number' }, 'call from +44 7400 000002 to 442079460001 refused');
    const line = record();
    expect(line.msg).toBe('call from +** **** **0002 to ********0001 refused');
    expect(line.err.message).toBe('invalid number "+**/****/**0001": only digits, a leading +, spaces, dots, dashes and brackets are allowed');
    expect(line.err.stack).toContain('invalid number "+**/****/**0001"');
    expect(line.err.code).toBe('VNUM_INVALID_NUMBER');
    expect(line.reason).toBe('invalid number "*******٠٠٠١": it is not a phone number');
    // Part of a number shaped like an address is still part of the number.
    expect(redactText('call from 07911 123.45.6.78 refused')).toBe('call from ***** ***.*5.6.78 refused');
    // A number inside a Local channel name is a number.
    expect(redactText('Local/+447911123456@vnum-00000001;1')).toBe('Local/+********3456@vnum-00000001;1');
  });

  it('what an attacker sends as caller ID cannot escape: any separators, any digits, any length, bidi controls', () => {
    const scripts = ZEROS;
    const separators = [' ', '/', '.', '-', '\u00a0', '\u200b', '|', '~', '\u2011', '_', ':', ',', '(', ')', '*', '#', '\u202f', '\u0301'];
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 8, maxLength: 15 }),
        fc.constantFrom(...scripts),
        fc.array(fc.constantFrom(...separators, ''), { minLength: 15, maxLength: 15 }),
        fc.boolean(),
        (digits, zero, seps, plus) => {
          const number = (plus ? '+' : '') + digits.map((d, i) => String.fromCodePoint(zero + d) + seps[i]).join('');
          const { logger, record } = capture();
          logger.info({ caller: number, err: new Error(`invalid number "${number}": no`) }, `call from ${number}`);
          const line = record();
          // At most the last 4 digits are left, in each place the number went.
          expect(digitsOf(line.caller)).toBe(digits.slice(-4).join(''));
          expect(digitsOf(line.err.message)).toBe(digits.slice(-4).join(''));
          expect(digitsOf(line.msg).length).toBeLessThanOrEqual(4);
        },
      ),
      { numRuns: 300 },
    );
    const { logger, lines, record } = capture();
    logger.info({ caller: `+44${'7'.repeat(10_000)}\u202e1234` }, 'x');
    expect(lines[0]!.length).toBeLessThan(300);
    expect(record().caller).not.toContain('\u202e');
  });

  it.each(['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const)('redacts at level %s in messages, fields and errors', (level) => {
    const { logger, lines } = capture();
    logger[level]({ caller: '+447911123456', nested: { to: '447400123456' }, err: new Error('no route for 07911123456') }, 'call from +447911123456');
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line).not.toMatch(/\d{5,}/);
    const parsed = JSON.parse(line);
    expect(parsed.caller).toBe('+********3456');
    expect(parsed.nested.to).toBe('********3456');
    expect(parsed.msg).toBe('call from +********3456');
    expect(parsed.err.message).toBe('no route for *******3456');
    expect(Number.isNaN(Date.parse(parsed.time))).toBe(false);
  });

  it('a child logger\'s bindings are redacted too', () => {
    const { logger, record } = capture();
    logger.child({ component: 'agi', caller: '+447911123456' }).info('x');
    expect(record()).toMatchObject({ component: 'agi', caller: '+********3456' });
  });

  it('redactNumber: the shape stays, the identity goes', () => {
    expect(redactNumber('+447911123456')).toBe('+********3456');
    expect(redactNumber('+********3456')).toBe('+********3456');
    expect(redactNumber('unknown')).toBe('unknown');
  });
});

describe('VNUM_LOG_REDACT=off shows everything', () => {
  it('numbers and identifiers as logged', () => {
    const { logger, record } = capture('info', false);
    logger.info({ caller: '+44/7400/000001', session: 'order-1234567' }, 'call from +447911123456');
    expect(record()).toMatchObject({ caller: '+44/7400/000001', session: 'order-1234567', msg: 'call from +447911123456' });
  });
});

describe('log settings are configuration, refused clearly', () => {
  it('VNUM_LOG_LEVEL: a pino level (any case), unset or empty for info; anything else a configuration error', () => {
    expect(logLevelSetting(undefined)).toBe('info');
    expect(logLevelSetting('')).toBe('info');
    expect(logLevelSetting('DEBUG')).toBe('debug');
    expect(() => logLevelSetting('bogus')).toThrow(VnumError);
    expect(() => logLevelSetting("bogus")).toThrow(/invalid VNUM_LOG_LEVEL "bogus": one of fatal, error, warn, info, debug, trace, silent/);
    try {
      logLevelSetting('bogus');
    } catch (e) {
      expect((e as VnumError).code).toBe(ErrorCode.Configuration);
    }
  });

  it('VNUM_LOG_REDACT: on, off, unset or empty; a value that might mean either is refused', () => {
    expect(logRedactSetting(undefined)).toBe(true);
    expect(logRedactSetting('')).toBe(true);
    expect(logRedactSetting('on')).toBe(true);
    expect(logRedactSetting('OFF')).toBe(false);
    for (const unclear of ['no', 'false', '0', 'of']) expect(() => logRedactSetting(unclear), unclear).toThrow(/invalid VNUM_LOG_REDACT/);
  });
});

describe('floods', () => {
  it('at most 20 lines a second with one message at info and above; the rest are counted into the next one', () => {
    let now = 1_000_000;
    const lines: string[] = [];
    const logger = createLogger({ level: 'trace', now: () => now, destination: { write: (line: string) => lines.push(line) } });
    const records = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (let i = 0; i < 1000; i++) logger.info({ caller: '+447700900123', n: i }, 'invalid call');
    for (let i = 0; i < 5; i++) logger.warn({ address: '10.0.0.1' }, 'FastAGI connection refused: address not in allow-list');
    expect(records().filter((r) => r.msg === 'invalid call')).toHaveLength(LINES_PER_MESSAGE_PER_SECOND);
    expect(records().filter((r) => r.msg === 'FastAGI connection refused: address not in allow-list')).toHaveLength(5);
    now += 1000;
    logger.info({ caller: '+447700900123' }, 'invalid call');
    logger.info('invalid call');
    const after = records().filter((r) => r.msg === 'invalid call').slice(LINES_PER_MESSAGE_PER_SECOND);
    expect(after[0]).toMatchObject({ suppressed: 1000 - LINES_PER_MESSAGE_PER_SECOND, caller: '+********0123' });
    expect(after[1]!.suppressed).toBeUndefined();
    // An error as the first argument keeps its serialisation.
    for (let i = 0; i < 25; i++) logger.child({ component: 'x' }).error(new Error('store locked'), 'store failed');
    now += 1000;
    logger.error(new Error('store locked'), 'store failed');
    expect(records().filter((r) => r.msg === 'store failed').at(-1)).toMatchObject({ suppressed: 5, err: { message: 'store locked' } });
  });

  it('debug lines (one per call, on purpose) are never limited; the product\'s logger limits the rest', () => {
    const { logger, lines } = capture('debug');
    for (let i = 0; i < 100; i++) logger.debug({ n: i }, 'FastAGI connection');
    for (let i = 0; i < 100; i++) logger.warn({ n: i }, 'FastAGI protocol error: connection dropped');
    expect(lines.filter((l) => l.includes('"FastAGI connection"'))).toHaveLength(100);
    expect(lines.filter((l) => l.includes('protocol error'))).toHaveLength(LINES_PER_MESSAGE_PER_SECOND);
  });
});
