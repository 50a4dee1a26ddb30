/**
 * PINs and callers without a bridge: the PIN's size, its issue at create, the
 * router's answers to a PIN typed (src/routing/pin.ts, service.ts), its limits
 * (pin-guard.ts), the out-of-session handling of a pool number, and the
 * settings of `vnum serve` that carry them.
 */
import { describe, expect, it } from 'vitest';
import { Command } from 'commander';
import { createSession, releaseSession } from '../../src/session/sessions.js';
import { DEFAULT_PIN_GUESS_BOUND, PIN_MAX_DIGITS, PIN_MIN_DIGITS, pinDigits } from '../../src/session/pin.js';
import { setNumberHandling } from '../../src/pool/handling.js';
import { createCallRouter, type RoutedCall } from '../../src/routing/service.js';
import { answerFor, channelVariables, SOUND_NAME, type Prompts } from '../../src/routing/answer.js';
import { PinGuard } from '../../src/routing/pin-guard.js';
import { addOutOfSessionSettings, DEFAULT_SOUNDS, outOfSessionSettings } from '../../src/cli/out-of-session-settings.js';
import { captureLog } from '../support/log.js';
import { pinSweepScenario } from '../support/pin-sweep.js';
import { openSqliteAuthority } from '../../src/authority/sqlite.js';
import { useCliDatabase } from '../support/cli.js';
import { londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';
import type { E164 } from '../../src/numbers/normalise.js';

const DESK = '+442079460999' as E164;

describe('PIN length from the guessing arithmetic', () => {
  it('one random guess succeeds with probability (N+1)/10^L at most the bound, L from 6 to 12', () => {
    expect(pinDigits(0, 1e-6)).toBe(6); // 1/10^6 <= 1e-6
    expect(pinDigits(1, 1e-6)).toBe(7); // 2/10^6 > 1e-6
    expect(pinDigits(0, 1e-4)).toBe(PIN_MIN_DIGITS);
    expect(pinDigits(99, 1e-6)).toBe(8);
    expect(pinDigits(4_999, 1e-6)).toBe(10); // 5,000 live sessions on one number
    expect(pinDigits(4_999, 1e-4)).toBe(8);
    expect(pinDigits(10 ** 9, 1e-6)).toBe(PIN_MAX_DIGITS);
    for (const live of [0, 1, 9, 10, 999, 5_000, 123_456]) {
      const digits = pinDigits(live, DEFAULT_PIN_GUESS_BOUND);
      if (digits < PIN_MAX_DIGITS) expect((live + 1) / 10 ** digits).toBeLessThanOrEqual(DEFAULT_PIN_GUESS_BOUND);
      if (digits > PIN_MIN_DIGITS) expect((live + 1) / 10 ** (digits - 1)).toBeGreaterThan(DEFAULT_PIN_GUESS_BOUND);
    }
  });

  it('refuses a bound that is no probability, or one no PIN length could meet', () => {
    for (const bound of [0, -1, 1, 0.5, Number.NaN, 1e-13]) expect(() => pinDigits(0, bound)).toThrow(/PIN guess bound/);
  });
});

describe('PINs issued at create', () => {
  it('each party gets one, for the number it dials; the store keeps a digest, never the digits', () => {
    const store = tempDb();
    try {
      seedPool(store.db, londonDids(4));
      const { session } = createSession(store.db, { id: 'o1', first: party(mobile(1)), second: party(mobile(2)), now: 1_000 });
      const [a, b] = session.parties;
      expect(a.pin).toMatch(/^\d{6}$/);
      expect(b.pin).toMatch(/^\d{6,7}$/); // 7 when both parties dial the same number
      const rows = store.db.prepare('SELECT dialled, caller, hex(digest) AS digest FROM pin ORDER BY caller').all() as Array<Record<string, string>>;
      expect(rows).toEqual([
        { dialled: b.maskedAs, caller: a.number, digest: expect.stringMatching(/^[0-9A-F]{32}$/) },
        { dialled: a.maskedAs, caller: b.number, digest: expect.stringMatching(/^[0-9A-F]{32}$/) },
      ]);
      const dump = JSON.stringify(store.db.prepare('SELECT * FROM pin').all());
      expect(dump).not.toContain(a.pin);
      expect(dump).not.toContain(b.pin);
    } finally {
      store.cleanup();
    }
  });

  it('PINs on one number stay unique among its live sessions, and grow with them', () => {
    const store = tempDb();
    try {
      const [did] = londonDids(1);
      seedPool(store.db, [did!]);
      // A bound so loose that clashes are frequent at 6 digits: uniqueness must come from the store.
      const pins = new Set<string>();
      for (let i = 0; i < 300; i++) {
        const { session } = createSession(store.db, {
          id: `o${i}`, first: party(mobile(1000 + i)), second: party(mobile(5000 + i)), now: 1_000, pinGuessBound: 1e-3,
        });
        for (const p of session.parties) pins.add(`${p.maskedAs} ${p.pin}`);
      }
      expect(pins.size).toBe(600);
      const lengths = (store.db.prepare('SELECT count(*) AS n FROM pin').get() as { n: number }).n;
      expect(lengths).toBe(600);
      // 300 live PINs on the number at a bound of 1e-3: the last ones need (300)/10^L <= 1e-3, L = 6.
      expect(pinDigits(299, 1e-3)).toBe(6);
    } finally {
      store.cleanup();
    }
  });

  it('a create purges at most PIN_SWEEP ended PINs per PIN it issues, the sweep reaches them all, the tally stays the rows', async () => {
    const store = tempDb();
    const authority = openSqliteAuthority(store.path, { mode: 'write' });
    try {
      await pinSweepScenario(authority, async (dialled) => ({
        rows: store.db.prepare('SELECT count(*) FROM pin WHERE dialled = ?').pluck().get(dialled) as number,
        tally: store.db.prepare('SELECT pins FROM pin_tally WHERE dialled = ?').pluck().get(dialled) as number | undefined,
      }));
    } finally {
      await authority.close();
      store.cleanup();
    }
  });

  it('a bad bound is refused before anything is written', () => {
    const store = tempDb();
    try {
      seedPool(store.db, londonDids(2));
      expect(() => createSession(store.db, { id: 'o1', first: party(mobile(1)), second: party(mobile(2)), now: 1, pinGuessBound: 2 })).toThrow(/PIN guess bound/);
      expect(store.db.prepare('SELECT count(*) AS n FROM session').get()).toEqual({ n: 0 });
    } finally {
      store.cleanup();
    }
  });
});

const PROMPTS: Prompts = { sounds: { ...DEFAULT_SOUNDS }, pin: { maxDigits: 12, digitTimeoutS: 5, timeoutS: 60 } };

function world(options: { pin?: 'off' | 'withheld' | 'all'; outOfSession?: 'announce' | 'fallback'; limits?: Partial<{ attempts: number; perCaller: number; perNumber: number }> } = {}) {
  const store = tempDb();
  const dids = londonDids(4);
  seedPool(store.db, dids);
  const alice = mobile(1);
  const dev = mobile(2);
  let now = 10_000;
  // Two different masked numbers: each party's PIN is for a number of its own.
  const { session } = createSession(store.db, { id: 'order', first: party(alice, dids[0]), second: party(dev, dids[1]), now });
  const log = captureLog({ level: 'info' });
  const router = createCallRouter({
    dbPath: store.path,
    logger: log.logger,
    defaultCountry: 'GB',
    now: () => now,
    handling: { pin: options.pin ?? 'withheld', outOfSession: options.outOfSession ?? 'announce', fallback: DESK },
    pinLimits: { attempts: 3, perCaller: 5, perNumber: 20, windowMs: 3_600_000, ...options.limits },
  });
  let n = 0;
  const call = (callerId: string, extension: string): RoutedCall => ({ callerId, extension, dnid: '', uniqueId: `1700000000.${++n}` });
  return {
    store, router, log, session, alice, dev, dids, call,
    advance: (ms: number) => (now += ms),
    close: () => {
      router.close();
      store.cleanup();
    },
  };
}

describe('the router and a PIN', () => {
  it('a withheld caller is asked for a PIN; the right PIN bridges as its party, the callee sees that party\'s masked number', () => {
    const w = world();
    try {
      const [alicePart, devPart] = w.session.parties;
      const c = w.call('anonymous', devPart.maskedAs);
      expect(w.router.route(c).status).toBe('PIN');
      const answer = w.router.pin(c, alicePart.pin!);
      expect(answer).toMatchObject({ status: 'BRIDGE', target: w.dev, presentedCallerId: alicePart.maskedAs, session: 'order', via: 'pin' });
      // The PIN is never logged.
      expect(w.log.lines.join('\n')).not.toContain(alicePart.pin);
    } finally {
      w.close();
    }
  });

  it('wrong PINs, the other party\'s PIN (for another number), PINs of another shape: PIN_RETRY, then PIN_FAILED after the tries', () => {
    const w = world();
    try {
      const [alicePart, devPart] = w.session.parties;
      const c = w.call('anonymous', devPart.maskedAs);
      expect(w.router.pin(c, devPart.pin!).status).toBe('PIN_RETRY'); // Dev's PIN is for Alice's masked number
      expect(w.router.pin(c, '').status).toBe('PIN_RETRY');
      expect(w.router.pin(c, '12345678901234').status).toBe('PIN_FAILED');
      // The call is out of tries: even the right PIN is not looked up now.
      expect(w.router.pin(c, alicePart.pin!).status).toBe('PIN_FAILED');
      // A new call may try again.
      expect(w.router.pin(w.call('anonymous', devPart.maskedAs), alicePart.pin!).status).toBe('BRIDGE');
    } finally {
      w.close();
    }
  });

  it('a PIN of an ended session is a wrong PIN, answered like any other', () => {
    const w = world();
    try {
      const [alicePart, devPart] = w.session.parties;
      releaseSession(w.store.db, 'order', 0, 10_000);
      w.advance(1);
      expect(w.router.pin(w.call('anonymous', devPart.maskedAs), alicePart.pin!).status).toBe('PIN_RETRY');
    } finally {
      w.close();
    }
  });

  it('the number\'s limit: after perNumber wrong PINs, nobody on that number is asked, until the window passes', () => {
    const w = world({ limits: { perNumber: 4, attempts: 2 } });
    try {
      const [alicePart, devPart] = w.session.parties;
      for (let i = 0; i < 2; i++) {
        const c = w.call('anonymous', devPart.maskedAs);
        w.router.pin(c, '000000');
        w.router.pin(c, '000001');
      }
      expect(w.router.route(w.call('anonymous', devPart.maskedAs)).status).toBe('INVALID');
      expect(w.router.pin(w.call('anonymous', devPart.maskedAs), alicePart.pin!).status).toBe('PIN_FAILED');
      // Another number is not locked.
      expect(w.router.route(w.call('anonymous', alicePart.maskedAs)).status).toBe('PIN');
      w.advance(3_600_000);
      expect(w.router.pin(w.call('anonymous', devPart.maskedAs), alicePart.pin!).status).toBe('BRIDGE');
    } finally {
      w.close();
    }
  });

  it('the caller\'s limit counts wrong PINs from one number across calls and pool numbers', () => {
    const w = world({ pin: 'all', limits: { perCaller: 3 } });
    try {
      const stranger = '+441314960999';
      const [alicePart, devPart] = w.session.parties;
      w.router.pin(w.call(stranger, devPart.maskedAs), '111111');
      w.router.pin(w.call(stranger, alicePart.maskedAs), '111111');
      w.router.pin(w.call(stranger, devPart.maskedAs), '111111');
      expect(w.router.route(w.call(stranger, devPart.maskedAs)).status).toBe('NO_SESSION');
      // A withheld caller is not locked out by it.
      expect(w.router.route(w.call('anonymous', devPart.maskedAs)).status).toBe('PIN');
    } finally {
      w.close();
    }
  });

  it('modes: off asks nobody, withheld only withheld and invalid callers, all every caller without a bridge; never an ENDED party', () => {
    for (const [mode, withheld, stranger] of [['off', 'INVALID', 'NO_SESSION'], ['withheld', 'PIN', 'NO_SESSION'], ['all', 'PIN', 'PIN']] as const) {
      const w = world({ pin: mode });
      try {
        const dialled = w.session.parties[1].maskedAs;
        expect(w.router.route(w.call('anonymous', dialled)).status, mode).toBe(withheld);
        expect(w.router.route(w.call('not a number', dialled)).status, mode).toBe(withheld);
        expect(w.router.route(w.call('+441314960999', dialled)).status, mode).toBe(stranger);
        releaseSession(w.store.db, 'order', 0, 10_000);
        w.advance(1);
        expect(w.router.route(w.call(w.alice, dialled)).status, mode).toBe('ENDED');
        // The dialplan cannot ask for a lookup the number would not offer.
        if (mode === 'off') expect(w.router.pin(w.call('anonymous', dialled), '123456').status).toBe('PIN_FAILED');
      } finally {
        w.close();
      }
    }
  });

  it('a pool number\'s own handling wins over the default; fallback puts the refused caller through to the desk presenting the dialled number', () => {
    const w = world({ pin: 'off' });
    try {
      const dialled = w.session.parties[1].maskedAs;
      setNumberHandling(w.store.db, dialled, { outOfSession: 'fallback' });
      const desk = w.router.route(w.call('+441314960999', dialled));
      expect(desk).toMatchObject({ status: 'FALLBACK', target: DESK, presentedCallerId: dialled, session: null, reason: 'NO_SESSION' });
      setNumberHandling(w.store.db, dialled, { fallback: '+442079460998' as E164, pin: 'all' });
      const c = w.call('+441314960999', dialled);
      expect(w.router.route(c).status).toBe('PIN');
      for (const wrong of ['1', '2']) expect(w.router.pin(c, wrong).status).toBe('PIN_RETRY');
      expect(w.router.pin(c, '3')).toMatchObject({ status: 'FALLBACK', target: '+442079460998', reason: 'PIN_FAILED' });
      // A number set back to the defaults.
      setNumberHandling(w.store.db, dialled, { fallback: null, pin: null, outOfSession: null });
      expect(w.router.route(w.call('+441314960999', dialled)).status).toBe('NO_SESSION');
      // The log names the pool number and the reason, never the caller.
      expect(w.log.lines.join('\n')).not.toContain('1314960999');
    } finally {
      w.close();
    }
  });

  it('a bridged caller is routed as before: no PIN, no handling read', () => {
    const w = world({ pin: 'all' });
    try {
      const [alicePart, devPart] = w.session.parties;
      expect(w.router.route(w.call(w.alice, devPart.maskedAs))).toEqual({
        status: 'BRIDGE', target: w.dev, presentedCallerId: alicePart.maskedAs, session: 'order',
      });
    } finally {
      w.close();
    }
  });
});

describe('PinGuard', () => {
  it('fails closed when its tables are full of live counts', () => {
    const guard = new PinGuard({ attempts: 3, perCaller: 5, perNumber: 1_000_000, windowMs: 60_000 });
    for (let i = 0; i < 100_000; i++) guard.wrong({ call: `c${i}`, caller: null, dialled: '+442079460001' }, 0);
    expect(guard.open({ call: 'new', caller: null, dialled: '+442079460001' }, 1)).toBe(false);
    expect(guard.open({ call: 'new', caller: null, dialled: '+442079460001' }, 60_001)).toBe(true);
  });
});

describe('the answers without a bridge', () => {
  it('a bridge\'s answer is the four variables of before; a PIN\'s carries how to read it; refusals their sound', () => {
    const bridge = answerFor({ status: 'BRIDGE', target: '+447700900789' as E164, presentedCallerId: '+447700900111' as E164, session: 's', via: 'pin' }, PROMPTS)!;
    expect(channelVariables(bridge).map(([name]) => name)).toEqual(['VNUM_STATUS', 'VNUM_TARGET', 'VNUM_CLI', 'VNUM_SESSION']);
    expect(bridge.via).toBe('pin');
    const pin = answerFor({ status: 'PIN', target: null, presentedCallerId: null, session: null }, PROMPTS)!;
    expect(channelVariables(pin)).toEqual([
      ['VNUM_STATUS', 'PIN'], ['VNUM_TARGET', ''], ['VNUM_CLI', ''], ['VNUM_SESSION', ''],
      ['VNUM_SOUND', 'confbridge-pin'], ['VNUM_PIN_PROMPT', 'confbridge-pin'], ['VNUM_PIN_DIGITS', '12'],
      ['VNUM_PIN_DIGIT_TIMEOUT', '5'], ['VNUM_PIN_TIMEOUT', '60'], ['VNUM_PIN_FAILED', 'goodbye'],
    ]);
    const ended = answerFor({ status: 'ENDED', target: null, presentedCallerId: null, session: 'old' }, PROMPTS)!;
    const none = answerFor({ status: 'NO_SESSION', target: null, presentedCallerId: null, session: null }, PROMPTS)!;
    expect(ended.sound).toBe('vm-goodbye');
    expect(none.sound).toBe('ss-noservice');
    const fallback = answerFor({ status: 'FALLBACK', target: DESK, presentedCallerId: '+442079460001' as E164, session: null }, PROMPTS)!;
    expect(channelVariables(fallback)).toEqual([['VNUM_STATUS', 'FALLBACK'], ['VNUM_TARGET', DESK], ['VNUM_CLI', '+442079460001'], ['VNUM_SESSION', '']]);
    // A FALLBACK without both numbers could dial nobody, or present the caller: ERROR.
    expect(answerFor({ status: 'FALLBACK', target: DESK, presentedCallerId: null, session: null }, PROMPTS)).toBeUndefined();
  });

  it('a sound name with dialplan metacharacters, or a PIN setting out of range, makes the answer ERROR', () => {
    for (const bad of ['a,b', 'x)', '${EVIL}', 'a&b', '../etc/passwd', '/abs', 'a b', 'a|b', 'a^b', 'x.gsm', 'a//b', 'trailing/', '', 'x'.repeat(65), 'é']) {
      expect(SOUND_NAME.test(bad), bad).toBe(false);
      const prompts = { ...PROMPTS, sounds: { ...PROMPTS.sounds, noSession: bad, pinPrompt: bad } };
      expect(answerFor({ status: 'NO_SESSION', target: null, presentedCallerId: null, session: null }, prompts), bad).toBeUndefined();
      expect(answerFor({ status: 'PIN', target: null, presentedCallerId: null, session: null }, prompts), bad).toBeUndefined();
    }
    for (const good of ['custom/order-ended', 'ss-noservice', 'a_b-c/d']) expect(SOUND_NAME.test(good), good).toBe(true);
    for (const pin of [{ maxDigits: 0 }, { digitTimeoutS: -1 }, { timeoutS: 10_000 }, { timeoutS: 1.5 }]) {
      expect(answerFor({ status: 'PIN', target: null, presentedCallerId: null, session: null }, { ...PROMPTS, pin: { ...PROMPTS.pin, ...pin } })).toBeUndefined();
    }
  });
});

describe('vnum serve\'s settings for callers without a bridge', () => {
  function parse(args: string[], env: Record<string, string> = {}) {
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      const command = new Command('serve').exitOverride().configureOutput({ writeErr: () => {} });
      addOutOfSessionSettings(command);
      command.parse(args, { from: 'user' });
      return outOfSessionSettings(command.opts());
    } finally {
      process.env = saved;
    }
  }

  it('defaults: PIN off, announcements, 3 tries, 60 s, 5 s a digit, the stock sounds', () => {
    const s = parse([]);
    expect(s.handling).toEqual({ pin: 'off', outOfSession: 'announce', fallback: null });
    expect(s.pinLimits).toMatchObject({ attempts: 3, perCaller: 5, perNumber: 20 });
    expect(s.prompts).toEqual({ sounds: DEFAULT_SOUNDS, pin: { maxDigits: 12, digitTimeoutS: 5, timeoutS: 60 } });
    expect(parse(['--pin', 'withheld', '--out-of-session', 'fallback', '--fallback', DESK, '--sound-ended', 'custom/order-ended']).handling)
      .toEqual({ pin: 'withheld', outOfSession: 'fallback', fallback: DESK });
    expect(parse([], { VNUM_PIN_TIMEOUT: '2m', VNUM_SOUND_ENDED: 'custom/ended' }).prompts).toMatchObject({
      sounds: { ended: 'custom/ended' }, pin: { timeoutS: 120 },
    });
  });

  it('negative, huge, fractional and malformed values are refused, naming the setting', () => {
    const refusals: Array<[string[], Record<string, string>, RegExp]> = [
      [['--pin-timeout', '-5s'], {}, /--pin-timeout/],
      [['--pin-timeout', '99999h'], {}, /--pin-timeout/],
      [['--pin-timeout', '5s'], {}, /from 10s to 300s/],
      [['--pin-digit-timeout', '0s'], {}, /--pin-digit-timeout/],
      [['--pin-digit-timeout', '1500ms'], {}, /whole seconds/],
      [['--pin-attempts', '0'], {}, /--pin-attempts/],
      [['--pin-attempts', '1e9'], {}, /--pin-attempts/],
      [['--pin-number-limit', '-1'], {}, /--pin-number-limit/],
      [[], { VNUM_PIN_CALLER_LIMIT: '999999999' }, /VNUM_PIN_CALLER_LIMIT/],
      [['--pin', 'sometimes'], {}, /off, withheld, all/],
      [['--out-of-session', 'pin'], {}, /announce, fallback/],
      [['--fallback', '0207946'], {}, /\+E\.164/],
      [['--sound-no-session', 'ss-noservice,1)'], {}, /sound name/],
      [[], { VNUM_SOUND_PIN_PROMPT: '${SHELL}' }, /VNUM_SOUND_PIN_PROMPT/],
      [['--sound-ended', '../../etc/passwd'], {}, /sound name/],
      [['--out-of-session', 'fallback'], {}, /needs the desk/],
      [['--pin-timeout', '10s', '--pin-digit-timeout', '10s'], {}, /shorter than --pin-timeout/],
    ];
    for (const [args, env, message] of refusals) {
      expect(() => parse(args, env), `${args.join(' ')} ${JSON.stringify(env)}`).toThrow(message);
    }
  });
});

describe('the call log and the refusal counts', () => {
  it('a call bridged by a PIN is marked via pin; refusals are counted per pool number and reason, without AMI, and with no caller number', async () => {
    const { CallTracker } = await import('../../src/calls/tracker.js');
    const { listCalls, recordRoutedCall, refusalCounts } = await import('../../src/calls/store.js');
    const w = world({ pin: 'withheld' });
    try {
      const [alicePart, devPart] = w.session.parties;
      recordRoutedCall(w.store.db, { uniqueid: '1.1', channel: 'PJSIP/c-1', session: 'order', target: w.dev, via: 'pin', at: 1 });
      recordRoutedCall(w.store.db, { uniqueid: '1.2', channel: 'PJSIP/c-2', session: 'order', target: w.alice, at: 2 });
      const calls = listCalls(w.store.db, { limit: 10 }).calls;
      expect(calls.map((c) => [c.uniqueid, c.caller, c.via])).toEqual([['1.2', 'second', null], ['1.1', 'first', 'pin']]);

      const tracker = new CallTracker({ dbPath: w.store.path, ami: null, router: 'r:1', logger: w.log.logger });
      tracker.start();
      try {
        for (const [callerId, dialled] of [['+441314960999', devPart.maskedAs], ['+441314960999', devPart.maskedAs], ['anonymous', alicePart.maskedAs]] as const) {
          const c = { ...w.call(callerId, dialled), channel: 'PJSIP/c-9', uniqueId: '1.9' };
          const decision = w.router.route(c);
          const answer = answerFor(decision, PROMPTS)!;
          tracker.routed(c, answer, decision);
        }
        // A PIN prompt is no refusal; the two strangers are.
        const { until } = await import('../support/wait.js');
        await until(() => refusalCounts(w.store.db).length > 0, 3_000);
        expect(refusalCounts(w.store.db)).toEqual([{ dialled: devPart.maskedAs, reason: 'NO_SESSION', count: 2, lastAt: expect.any(Number) }]);
      } finally {
        await tracker.stop();
      }
    } finally {
      w.close();
    }
  });
});

describe('vnum pool set and session create (built CLI)', () => {
  const cli = useCliDatabase('vnum-pin-cli-');

  it('sets a number\'s handling, shows it in pool list, returns it to the default; refuses what cannot work, writing nothing', () => {
    const [did, other] = londonDids(2);
    expect(cli.run('pool', 'add', did!, other!).code).toBe(0);
    const set = cli.run('pool', 'set', did!, '--pin', 'all', '--out-of-session', 'fallback', '--fallback', DESK, '--json');
    expect(set.code).toBe(0);
    expect(JSON.parse(set.stdout)).toEqual({ number: did, pin: 'all', outOfSession: 'fallback', fallback: DESK, changed: true });
    const listed = JSON.parse(cli.run('pool', 'list', '--json').stdout) as Array<Record<string, unknown>>;
    expect(listed.find((n) => n.number === did)).toMatchObject({ pin: 'all', outOfSession: 'fallback', fallback: DESK });
    expect(listed.find((n) => n.number === other)).toMatchObject({ pin: null, outOfSession: null, fallback: null });
    const refusals: Array<[string[], number, RegExp]> = [
      [['pool', 'set', did!, '--pin', 'sometimes'], 1, /invalid --pin "sometimes": use off, withheld, all or default \[VNUM_INVALID_ARGUMENT\]/],
      [['pool', 'set', did!, '--out-of-session', 'pin'], 1, /use announce, fallback or default/],
      [['pool', 'set', did!, '--fallback', other!], 1, /is a pool number: the trunk would hand its calls back to vnum \[VNUM_POOL_CONFLICT\]/],
      [['pool', 'set', did!, '--fallback', '12'], 1, /VNUM_INVALID_NUMBER|VNUM_NO_DEFAULT_COUNTRY/],
      [['pool', 'set', '+442079460055', '--pin', 'off'], 1, /not in the pool \[VNUM_NOT_IN_POOL\]/],
      [['pool', 'set', did!], 1, /nothing to set/],
    ];
    for (const [args, code, message] of refusals) {
      const r = cli.run(...args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
    expect(JSON.parse(cli.run('pool', 'set', did!, '--pin', 'default', '--out-of-session', 'default', '--fallback', 'default', '--json').stdout)).toEqual({
      number: did, pin: null, outOfSession: null, fallback: null, changed: true,
    });
  });

  it('session create --json shows each party\'s PIN once; a bound out of range is refused before anything is written', () => {
    const [a, b] = londonDids(2);
    cli.run('pool', 'add', a!, b!);
    const created = JSON.parse(cli.run('session', 'create', 'o1', mobile(1), mobile(2), '--json').stdout);
    expect(created.parties.map((p: { pin: string }) => p.pin)).toEqual([expect.stringMatching(/^\d{6,7}$/), expect.stringMatching(/^\d{6,7}$/)]);
    for (const bound of ['0', '-1', '1', 'abc', '1e-13', '0.5']) {
      const r = cli.run('session', 'create', `o-${bound}`, mobile(3), mobile(4), '--pin-guess-bound', bound);
      expect(r.code, bound).toBe(1);
      expect(r.stderr, bound).toMatch(/invalid PIN guess bound/);
    }
    const tight = JSON.parse(cli.run('session', 'create', 'o2', mobile(5), mobile(6), '--pin-guess-bound', '1e-9', '--json').stdout);
    expect(tight.parties[0].pin).toMatch(/^\d{9,12}$/);
    expect(JSON.parse(cli.run('session', 'list', '--json').stdout)).toHaveLength(2);
  });
});
