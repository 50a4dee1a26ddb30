import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AgiError, isAgiError } from '../../agi/errors.js';
import {
  AgiWire,
  buildCommand,
  buildExec,
  buildMSet,
  escapeAppArgument,
  quoteArgument,
  type AgiEnvironment,
  type AgiPeer,
  type AgiReply,
} from '../../agi/wire.js';
import { asteriskRunsMSet, parseAgiArgs } from '../support/asterisk-model.js';
import { environmentText } from '../support/fake-asterisk.js';

/** A peer that records what the wire does. */
function harness(limits?: ConstructorParameters<typeof AgiWire>[1]) {
  const written: string[] = [];
  const environments: AgiEnvironment[] = [];
  const failures: AgiError[] = [];
  const peer: AgiPeer = {
    write: (data) => void written.push(data),
    onEnvironment: (env) => void environments.push(env),
    onFailure: (error) => void failures.push(error),
  };
  const wire = new AgiWire(peer, limits);
  return { wire, written, environments, failures };
}

/** A wire past its environment. */
function ready() {
  const h = harness();
  h.wire.push('agi_network: yes\nagi_request: agi://127.0.0.1/route\n\n');
  expect(h.wire.ready).toBe(true);
  return h;
}

/** Settled state of a promise without waiting for it. */
async function state<T>(promise: Promise<T>): Promise<'pending' | { value: T } | { error: unknown }> {
  const marker = Symbol('pending');
  const result = await Promise.race([
    promise.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    new Promise<typeof marker>((r) => setImmediate(() => r(marker))),
  ]);
  return result === marker ? 'pending' : (result as { value: T } | { error: unknown });
}

describe('argument escaping', () => {
  it('quotes every argument as one token', () => {
    expect(quoteArgument('plain')).toBe('"plain"');
    expect(quoteArgument('')).toBe('""');
    expect(quoteArgument('two words')).toBe('"two words"');
  });

  it('escapes quotes and backslashes', () => {
    expect(quoteArgument('say "hi"')).toBe('"say \\"hi\\""');
    expect(quoteArgument('C:\\dir\\')).toBe('"C:\\\\dir\\\\"');
    expect(quoteArgument('\\"')).toBe('"\\\\\\""');
  });

  it.each([
    ['LF', 'a\nEXEC System rm'],
    ['CR', 'a\rb'],
    ['CRLF', 'a\r\nb'],
    ['NUL', 'a\0b'],
  ])('refuses %s: it would end the command line', (_name, value) => {
    expect(() => quoteArgument(value)).toThrow(AgiError);
    expect(() => buildCommand('SET VARIABLE', ['X', value])).toThrow(/CR, LF or NUL/);
    expect(() => buildMSet([['X', value]])).toThrow(/CR, LF or NUL/);
  });

  it('Asterisk reads back exactly the argument we quoted', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: fc.constantFrom('\\', '"', ' ', '\t', 'a', ',', '(', ')', "'", '$', '{', '|') }),
          fc.string({ unit: 'binary' }),
        ),
        (value) => {
          fc.pre(!/[\r\n\0]/.test(value));
          expect(parseAgiArgs(buildCommand('SET VARIABLE', ['X', value]))).toEqual(['SET', 'VARIABLE', 'X', value]);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('escapes the characters MSet and other applications split or nest on', () => {
    expect(escapeAppArgument('a,b')).toBe('a\\,b');
    expect(escapeAppArgument('f(x)[y]"z"\\')).toBe('f\\(x\\)\\[y\\]\\"z\\"\\\\');
    expect(escapeAppArgument('+447700900123')).toBe('+447700900123');
  });

  it('refuses command verbs, application and variable names that are not plain', () => {
    expect(() => buildCommand('EXEC\nHANGUP')).toThrow(AgiError);
    expect(() => buildCommand('exec')).toThrow(AgiError);
    expect(() => buildExec('Dial,x', 'a')).toThrow(AgiError);
    expect(() => buildMSet([['A=B', '1']])).toThrow(AgiError);
    expect(() => buildMSet([['A,B', '1']])).toThrow(AgiError);
    expect(() => buildMSet([])).toThrow(AgiError);
    expect(() => buildCommand('NOOP', ['x'.repeat(9000)])).toThrow(/longer than/);
  });
});

describe('EXEC MSet', () => {
  it('is one command with the data as ONE quoted token', () => {
    const command = buildMSet([
      ['VNUM_STATUS', 'BRIDGE'],
      ['VNUM_TARGET', '+447700900789'],
      ['VNUM_CLI', '+447700900111'],
      ['VNUM_SESSION', 's_01HX'],
    ]);
    expect(command).toBe('EXEC MSet "VNUM_STATUS=BRIDGE,VNUM_TARGET=+447700900789,VNUM_CLI=+447700900111,VNUM_SESSION=s_01HX"');
    expect(asteriskRunsMSet(command)).toEqual([
      ['VNUM_STATUS', 'BRIDGE'],
      ['VNUM_TARGET', '+447700900789'],
      ['VNUM_CLI', '+447700900111'],
      ['VNUM_SESSION', 's_01HX'],
    ]);
  });

  it('sets empty values as empty, not skipped', () => {
    const command = buildMSet([
      ['VNUM_STATUS', 'ERROR'],
      ['VNUM_TARGET', ''],
    ]);
    expect(command).toBe('EXEC MSet "VNUM_STATUS=ERROR,VNUM_TARGET="');
    expect(asteriskRunsMSet(command)).toEqual([
      ['VNUM_STATUS', 'ERROR'],
      ['VNUM_TARGET', ''],
    ]);
  });

  it('keeps a comma inside a value from starting another assignment', () => {
    const command = buildMSet([['VNUM_TARGET', '123,VNUM_STATUS=BRIDGE']]);
    expect(asteriskRunsMSet(command)).toEqual([['VNUM_TARGET', '123,VNUM_STATUS=BRIDGE']]);
  });

  it('Asterisk sets exactly the variables and values given, whatever the values hold', () => {
    const special = fc.string({
      unit: fc.constantFrom('\\', '"', ',', '(', ')', '[', ']', '=', ' ', '\t', 'a', '1', '+', '|', '$', '{', '}', "'", ';'),
      maxLength: 30,
    });
    const anyText = fc.string({ unit: 'binary', maxLength: 30 }).filter((v) => !/[\r\n\0]/.test(v));
    const name = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/);
    fc.assert(
      fc.property(fc.array(fc.tuple(name, fc.oneof(special, anyText)), { minLength: 1, maxLength: 98 }), (pairs) => {
        expect(asteriskRunsMSet(buildMSet(pairs))).toEqual(pairs);
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses more pairs than MSet parses with escapes intact', () => {
    const pairs = Array.from({ length: 99 }, (_, i) => [`V${i}`, 'a,b'] as const);
    expect(() => buildMSet(pairs)).toThrow(/1 to 98/);
  });
});

describe('environment', () => {
  it('splits each line on the first ": " only', () => {
    const h = harness();
    h.wire.push(environmentText());
    expect(h.environments).toHaveLength(1);
    const env = h.environments[0]!;
    expect(env.get('agi_request')).toBe('agi://127.0.0.1:4573/route');
    expect(env.get('agi_calleridname')).toBe('Acme: Sales');
    expect(env.get('agi_callerid')).toBe('+447700900123');
    expect(env.get('agi_accountcode')).toBe('');
    expect(env.get('agi_threadid')).toBe('139872662513344');
    expect(env.size).toBe(22);
  });

  it('accepts CRLF and an empty value whose trailing space went missing', () => {
    const h = harness();
    h.wire.push('agi_request: agi://h:4573/x\r\nagi_accountcode:\r\nagi_rdnis: a: b: c\r\n\r\n');
    expect(h.failures).toEqual([]);
    const env = h.environments[0]!;
    expect(env.get('agi_request')).toBe('agi://h:4573/x');
    expect(env.get('agi_accountcode')).toBe('');
    expect(env.get('agi_rdnis')).toBe('a: b: c');
  });

  it('parses the same environment however it is chunked', () => {
    const text = environmentText();
    const whole = harness();
    whole.wire.push(text);
    const expected = [...whole.environments[0]!];
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 50 }), (sizes) => {
        const h = harness();
        let i = 0;
        let k = 0;
        while (i < text.length) {
          const size = sizes[k++ % sizes.length]!;
          h.wire.push(text.slice(i, i + size));
          i += size;
        }
        expect(h.failures).toEqual([]);
        expect(h.environments).toHaveLength(1);
        expect([...h.environments[0]!]).toEqual(expected);
      }),
      { numRuns: 300 },
    );
    const byte = harness();
    for (const ch of text) byte.wire.push(ch);
    expect([...byte.environments[0]!]).toEqual(expected);
  });

  it('reports the environment only once the blank line arrives', () => {
    const h = harness();
    h.wire.push('agi_network: yes\nagi_request: x\n');
    expect(h.environments).toHaveLength(0);
    expect(h.wire.ready).toBe(false);
    h.wire.push('\n');
    expect(h.environments).toHaveLength(1);
  });

  it.each([
    ['no separator', 'garbage\n'],
    ['no agi_ prefix', 'request: x\n'],
    ['a bad name', 'agi_re quest: x\n'],
    ['binary', '\u0000\u00ff\u0001: x\n'],
    ['a repeated name', 'agi_request: a\nagi_request: b\n'],
    ['a HANGUP before the environment', 'HANGUP\n'],
  ])('fails on %s', (_what, text) => {
    const h = harness();
    h.wire.push(text);
    expect(h.failures.map((f) => f.code)).toEqual(['AGI_BAD_ENV_LINE']);
    expect(h.wire.closed).toBe(true);
    h.wire.push('\n'); // ignored once closed
    expect(h.environments).toHaveLength(0);
  });

  it('bounds line length, with or without a newline', () => {
    const terminated = harness();
    terminated.wire.push(`agi_request: ${'x'.repeat(5000)}\n`);
    expect(terminated.failures.map((f) => f.code)).toEqual(['AGI_LINE_TOO_LONG']);
    const endless = harness();
    for (let i = 0; i < 10; i++) endless.wire.push('x'.repeat(500));
    expect(endless.failures.map((f) => f.code)).toEqual(['AGI_LINE_TOO_LONG']);
    const fits = harness({ maxLineLength: 20 });
    fits.wire.push('agi_a: 1234567890123\r\n\n');
    expect(fits.failures).toEqual([]);
  });

  it('bounds the whole environment', () => {
    const long = harness();
    for (let i = 0; i < 100; i++) long.wire.push(`agi_arg_${i}: ${'v'.repeat(200)}\n`);
    expect(long.failures.map((f) => f.code)).toEqual(['AGI_ENV_TOO_LARGE']);
    const many = harness();
    for (let i = 0; i < 200; i++) many.wire.push(`agi_arg_${i}: v\n`);
    expect(many.failures.map((f) => f.code)).toEqual(['AGI_ENV_TOO_LARGE']);
  });

  it('treats a reply arriving in the same chunk as the environment as stray', () => {
    const h = harness();
    let sent: Promise<AgiReply> | undefined;
    h.wire = new AgiWire({
      write: (d) => void h.written.push(d),
      onEnvironment: () => {
        sent = h.wire.send('NOOP');
      },
      onFailure: (e) => void h.failures.push(e),
    });
    // Sent before our command could have been read: it must not confirm it.
    h.wire.push('agi_request: x\n\n200 result=0\n');
    expect(h.failures.map((f) => f.code)).toEqual(['AGI_UNEXPECTED_LINE']);
    expect(sent).toBeUndefined();
  });
});

describe('replies', () => {
  it('parses 200 with result, data and trailing attributes', async () => {
    const h = ready();
    const reply = h.wire.send('GET DATA beep');
    h.wire.push('200 result=1 (timeout) endpos=1234\n');
    expect(await reply).toEqual({ code: 200, result: '1', data: 'timeout', text: 'result=1 (timeout) endpos=1234' });
    const plain = h.wire.send('NOOP');
    h.wire.push('200 result=0\n');
    expect(await plain).toMatchObject({ code: 200, result: '0', data: undefined });
  });

  it('skips HANGUP lines before the reply and counts them', async () => {
    const h = ready();
    h.wire.push('HANGUP\n');
    const reply = h.wire.send('NOOP');
    h.wire.push('HANGUP\nHANGUP\n200 result=0\n');
    expect(await reply).toMatchObject({ code: 200, result: '0' });
    expect(h.wire.hangups).toBe(3);
    expect(h.failures).toEqual([]);
  });

  it('waits past "100 result=0 Trying..." for the final reply', async () => {
    const h = ready();
    const reply = h.wire.send('GOSUB ctx s 1');
    h.wire.push('100 result=0 Trying...\n');
    expect(await state(reply)).toBe('pending');
    h.wire.push('200 result=0 Gosub complete\n');
    expect(await reply).toMatchObject({ code: 200, result: '0', text: 'result=0 Gosub complete' });
  });

  it.each([
    ['510 Invalid or unknown command', 510],
    ['511 Command Not Permitted on a dead channel or intercept routine', 511],
    ['520 Invalid command syntax.  Proper usage not available.', 520],
    ['503 result=-2 Memory allocation failure', 503],
  ])('settles the command with "%s"', async (line, code) => {
    const h = ready();
    const reply = h.wire.send('BOGUS');
    h.wire.push(line + '\n');
    const settled = await reply;
    expect(settled.code).toBe(code);
    expect(settled.text).toBe(line.slice(4));
    expect(h.failures).toEqual([]);
  });

  it('collects a multi-line 520 up to its closing line', async () => {
    const h = ready();
    const reply = h.wire.send('EXEC');
    h.wire.push('520-Invalid command syntax.  Proper usage follows:\n Usage: EXEC <application> <options>\n');
    expect(await state(reply)).toBe('pending');
    h.wire.push('200 result=0 looks like a reply but is usage text\n520 End of proper usage.\n');
    expect(await reply).toEqual({
      code: 520,
      result: undefined,
      data: undefined,
      text: [
        'Invalid command syntax.  Proper usage follows:',
        ' Usage: EXEC <application> <options>',
        '200 result=0 looks like a reply but is usage text',
        'End of proper usage.',
      ].join('\n'),
    });
    const next = h.wire.send('NOOP');
    h.wire.push('200 result=0\n');
    expect(await next).toMatchObject({ code: 200 });
  });

  it('keeps a partial trailing line for the next chunk', async () => {
    const h = ready();
    const reply = h.wire.send('NOOP');
    h.wire.push('HANGUP\n200 res');
    expect(await state(reply)).toBe('pending');
    h.wire.push('ult=0 (x');
    h.wire.push(')\n');
    expect(await reply).toMatchObject({ code: 200, result: '0', data: 'x' });
  });

  it('writes one command at a time and pairs each reply with its own command', async () => {
    const h = ready();
    const first = h.wire.send('GET VARIABLE A');
    const second = h.wire.send('GET VARIABLE B');
    expect(h.written).toEqual(['GET VARIABLE A\n']);
    h.wire.push('200 result=1 (a)\n');
    expect(await first).toMatchObject({ data: 'a' });
    expect(h.written).toEqual(['GET VARIABLE A\n', 'GET VARIABLE B\n']);
    h.wire.push('200 result=1 (b)\n');
    expect(await second).toMatchObject({ data: 'b' });
  });

  it('fails on a line with no command in flight', () => {
    const h = ready();
    h.wire.push('200 result=0\n');
    expect(h.failures.map((f) => f.code)).toEqual(['AGI_UNEXPECTED_LINE']);
  });

  it('fails and rejects the command on a line that is not a reply', async () => {
    const h = ready();
    const reply = h.wire.send('NOOP');
    h.wire.push('\u00ff\u0000garbage\n');
    await expect(reply).rejects.toMatchObject({ code: 'AGI_BAD_REPLY' });
    expect(h.failures.map((f) => f.code)).toEqual(['AGI_BAD_REPLY']);
  });

  it('bounds a multi-line reply', async () => {
    const h = ready();
    const reply = h.wire.send('X');
    h.wire.push('520-start\n' + 'usage\n'.repeat(300));
    await expect(reply).rejects.toMatchObject({ code: 'AGI_BAD_REPLY' });
  });

  it('rejects the command in flight and every queued one on close', async () => {
    const h = ready();
    const first = h.wire.send('A');
    const second = h.wire.send('B');
    h.wire.close();
    await expect(first).rejects.toMatchObject({ code: 'AGI_CLOSED' });
    await expect(second).rejects.toMatchObject({ code: 'AGI_CLOSED' });
    await expect(h.wire.send('C')).rejects.toMatchObject({ code: 'AGI_CLOSED' });
    expect(h.written).toEqual(['A\n']);
  });

  it('passes the reason given to close', async () => {
    const h = ready();
    const reply = h.wire.send('A');
    h.wire.close(new Error('socket reset'));
    await expect(reply).rejects.toThrow('socket reset');
  });

  it('times a command out, and then drops the connection', async () => {
    const h = ready();
    const reply = h.wire.send('NOOP', 20);
    const queued = h.wire.send('NOOP');
    await expect(reply).rejects.toMatchObject({ code: 'AGI_TIMEOUT' });
    await expect(queued).rejects.toMatchObject({ code: 'AGI_TIMEOUT' });
    expect(h.failures.map((f) => f.code)).toEqual(['AGI_TIMEOUT']);
    h.wire.push('200 result=0\n'); // too late: ignored
    expect(h.failures).toHaveLength(1);
  });

  it('refuses to send before the environment, or a command with a line break', async () => {
    const h = harness();
    await expect(h.wire.send('NOOP')).rejects.toMatchObject({ code: 'AGI_NOT_READY' });
    const r = ready();
    await expect(r.wire.send('NOOP\nHANGUP')).rejects.toMatchObject({ code: 'AGI_BAD_ARGUMENT' });
    expect(r.written).toEqual([]);
  });

  it('is not an event emitter: nothing to subscribe to, nothing to pile up', () => {
    expect(ready().wire).not.toBeInstanceOf(EventEmitter);
    expect(isAgiError(new AgiError('AGI_CLOSED', 'x'), 'AGI_CLOSED')).toBe(true);
  });
});
