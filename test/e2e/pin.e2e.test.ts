/**
 * End to end: callers without a bridge through the real Asterisk 22 and the
 * project's dialplan/vnum.conf, routed by the built `vnum serve`: PINs typed
 * as RFC 2833 DTMF (sipp's play_dtmf, payload type 96), the ENDED and
 * NO_SESSION announcements told apart, and the operator's desk as the
 * fallback. sipp on both sides; every message either side received is
 * scanned for real numbers (test/support/leaks.ts), as the routing suite does.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { startAgiStub } from '../support/asterisk/agi-stub.js';
import { Asterisk, leakyTrunkIdentity } from '../support/asterisk/asterisk.js';
import { ports } from '../support/asterisk/paths.js';
import { VnumDb, type SessionJson } from '../support/cli.js';
import { findLeaks } from '../support/leaks.js';
import { startServe } from '../support/serve.js';
import { describeMessages, uriUser, type SipMessage } from '../support/sip/messages.js';
import { placeDtmfCall, type DtmfCall, type DtmfResult } from '../support/sip/dtmf.js';
import { callThrough, startUas, type CallOutcome, type UacResult, type UasOptions } from '../support/sip/sipp.js';
import { until } from '../support/wait.js';
import { e2eSuite } from '../support/suite.js';
import { stopWorld, type World } from '../support/world.js';

const POOL = Array.from({ length: 6 }, (_, i) => `+4420794600${String(i + 1).padStart(2, '0')}`);
const ALICE = '+441134960123'; // customer
const DEV = '+441614960456'; // delivery agent
const ZOE = '+441174960789'; // the agent's other customer
const BOB = '+441184960555'; // a customer whose order has ended
const STRANGER = '+441314960999';
const RELATIVE = '+441514960321'; // the phone Alice borrows
const DESK = '+442079460999'; // the operator's support desk: not a real number of any party
const CAROL = '+441214960222'; // a customer on a sliding session whose calls are limited
const ERIN = '+441914960333'; // Carol's agent
const REAL = [ALICE, DEV, ZOE, BOB, STRANGER, RELATIVE, CAROL, ERIN];

const CALL_TIMEOUT_MS = 60_000;
/** PINs end with #; 100 ms tones: a 7-digit PIN takes 1.6 s to send. */
const TONE_MS = 100;
/** After the answer, the prompt starts; digits typed into it stop it (Read's prompt takes barge-in). */
const FIRST_TRY_AFTER_MS = 800;
/** Between tries: the PIN sent, the router's answer, the 0.44 s beep (--sound-pin-wrong beep), the prompt again. */
const NEXT_TRY_AFTER_MS = 2_600;

/** The router's settings: withheld callers are asked for a PIN; the desk for numbers set to fallback. */
const ROUTER_ENV = {
  VNUM_PIN: 'withheld',
  VNUM_FALLBACK: DESK,
  VNUM_PIN_ATTEMPTS: '3',
  VNUM_PIN_TIMEOUT: '20s',
  VNUM_PIN_DIGIT_TIMEOUT: '3s',
  VNUM_SOUND_PIN_WRONG: 'beep',
};

interface PinWorld extends World {
  order: SessionJson; // ALICE (first), DEV (second)
  ended: SessionJson; // BOB (first), DEV (second), released
}

let world: PinWorld | undefined;

/** The call log lines Asterisk wrote for one call (its NOTICE lines name the refusal). */
function logSince(before: number): string {
  return world!.asterisk.log().slice(before);
}

async function dtmfCall(call: DtmfCall, uas: UasOptions = {}): Promise<{ caller: DtmfResult; callee: SipMessage[]; invites: SipMessage[] }> {
  const far = await startUas(uas);
  let caller: DtmfResult;
  try {
    caller = await placeDtmfCall(call);
    await world!.asterisk.waitIdle();
  } finally {
    await far.stop();
  }
  return { caller, callee: far.received(), invites: far.invites() };
}

/** A call that types `pin` and # once, at the first prompt, then holds for `holdMs` unless Asterisk hangs up first. */
function typingPin(dialled: string, callerUser: string, pin: string, holdMs: number): Promise<{ caller: DtmfResult; callee: SipMessage[]; invites: SipMessage[] }> {
  return dtmfCall({ dialled, callerUser, steps: [{ pauseMs: FIRST_TRY_AFTER_MS }, { dtmf: `${pin}#`, toneMs: TONE_MS }], holdMs });
}

/** The From and To the caller sent: SIP echoes them back, and they are the caller's own. */
function ownHeaders(caller: UacResult): string[] {
  const invite = caller.messages.find((m) => m.direction === 'sent' && m.method === 'INVITE');
  return [invite?.header('From'), invite?.header('To')].filter((v): v is string => v !== undefined);
}

/** Identity headers a carrier adds for a caller: all of them carry `number`. */
function identityHeaders(number: string): string[] {
  return [
    `P-Asserted-Identity: <sip:${number}@127.0.0.1>`,
    `Remote-Party-ID: <sip:${number}@127.0.0.1>;party=calling;privacy=off;screen=yes`,
    `Diversion: <sip:${number}@127.0.0.1>;reason=unconditional`,
  ];
}

function detail(outcome: { caller: UacResult; callee: SipMessage[] }): string {
  return `caller received:\n${describeMessages(outcome.caller.received)}\ncallee received:\n${describeMessages(outcome.callee)}\nerrors: ${outcome.caller.errors}`;
}

/** Nothing reached the callee, and the caller heard no real number. */
function expectNoBridge(outcome: { caller: DtmfResult; callee: SipMessage[] }): void {
  expect(outcome.callee, detail(outcome)).toEqual([]);
  expect(findLeaks(outcome.caller.received, REAL), detail(outcome)).toEqual([]);
}

e2eSuite('callers without a bridge: PINs, announcements, the desk, through Asterisk 22', () => {
  beforeAll(async () => {
    const db = new VnumDb({ VNUM_DEFAULT_COUNTRY: 'GB' });
    db.poolAdd(POOL);
    // Dev already serves Zoe: Alice's side gets a number Dev does not dial, so the order's two masked numbers differ.
    db.createSession('order-zoe', ZOE, DEV);
    const order = db.createSession('order-alice', ALICE, DEV);
    const ended = db.createSession('order-bob', BOB, DEV);
    db.release('order-bob', '0s');
    // Everything on in the trunk: the carrier most willing to carry identity either way.
    const asterisk = await Asterisk.start({ trunk: leakyTrunkIdentity });
    const router = await startServe({ db: db.file, port: ports.router, env: ROUTER_ENV });
    world = { asterisk, db, router, order, ended };
  }, 120_000);
  afterAll(async () => stopWorld(world));
  afterEach(async () => {
    await world?.asterisk.waitIdle();
  });

  it('a withheld caller types Alice\'s PIN on Dev\'s masked number: Dev rings, presented with Alice\'s masked number', async () => {
    const w = world!;
    const [alice, dev] = w.order.parties;
    expect(alice.pin).toMatch(/^\d{6,12}$/);
    expect(alice.maskedAs).not.toBe(dev.maskedAs);
    const outcome = await typingPin(dev.maskedAs, 'anonymous', alice.pin!, 4_000);
    expect(outcome.invites, detail(outcome)).toHaveLength(1);
    const invite = outcome.invites[0]!;
    expect(uriUser(invite.requestUri)).toBe(DEV);
    expect(uriUser(invite.header('From'))).toBe(alice.maskedAs);
    for (const id of [...invite.headerAll('P-Asserted-Identity'), ...invite.headerAll('Remote-Party-ID')]) expect(uriUser(id)).toBe(alice.maskedAs);
    expect(outcome.caller.finalStatus).toBe(200);
    expect(outcome.caller.hungUpBy, detail(outcome)).toBe('caller');
    expect(findLeaks(outcome.callee, REAL.filter((n) => n !== DEV)), detail(outcome)).toEqual([]);
    expect(findLeaks(outcome.caller.received, REAL), detail(outcome)).toEqual([]);
    // The router logged the PIN bridge by session, and never the PIN.
    const log = w.router.lines().join('\n');
    expect(log).toContain('call bridged by PIN');
    expect(log).not.toContain(alice.pin!);
  }, CALL_TIMEOUT_MS);

  it('a PIN-bridged call is shaped and slides like its party\'s own: the call limit cuts it, and it pushes the sliding session\'s end', async () => {
    const w = world!;
    const session = w.db.createSession('order-carol', CAROL, ERIN, ['--idle-timeout', '1h', '--call-limit', '3s', '--limit-warning', '1s']);
    const [carol, erin] = session.parties;
    const endsAt = () => Date.parse((JSON.parse(w.db.run(['session', 'show', 'order-carol', '--json']).stdout) as { endsAt: string }).endsAt);
    const before = endsAt();
    const outcome = await typingPin(erin.maskedAs, 'anonymous', carol.pin!, 12_000);
    expect(outcome.invites, detail(outcome)).toHaveLength(1);
    expect(uriUser(outcome.invites[0]!.requestUri)).toBe(ERIN);
    expect(uriUser(outcome.invites[0]!.header('From'))).toBe(carol.maskedAs);
    // Asterisk hung up, the limit's length after Erin answered (the ACK of her 200), not the caller after 12 s.
    expect(outcome.caller.hungUpBy, detail(outcome)).toBe('asterisk');
    const ack = outcome.callee.find((m) => m.kind === 'request' && m.method === 'ACK');
    const bye = outcome.callee.find((m) => m.kind === 'request' && m.method === 'BYE');
    expect(ack && bye, detail(outcome)).toBeTruthy();
    const heldMs = bye!.at! - ack!.at!;
    console.info(`PIN-bridged call, 3 s limit: answer -> BYE ${heldMs} ms`);
    expect(heldMs).toBeGreaterThanOrEqual(2_900);
    expect(heldMs).toBeLessThan(4_500);
    // The sliding session's end moved forward (the push is on the router's write path: wait for it).
    await until(() => endsAt() > before, 5_000);
    expect(findLeaks(outcome.callee, REAL.filter((n) => n !== ERIN)), detail(outcome)).toEqual([]);
    expect(findLeaks(outcome.caller.received, REAL), detail(outcome)).toEqual([]);
  }, CALL_TIMEOUT_MS);

  it('three wrong PINs (one of them Dev\'s own, valid on another number; one of an ended session): refused, Dev never rings', async () => {
    const w = world!;
    const [, dev] = w.order.parties;
    const [bob] = w.ended.parties;
    // Dev's PIN is for Alice's masked number; Bob's PIN is for Dev's masked number, but his session has ended.
    expect(bob.pin).toMatch(/^\d{6,12}$/);
    const before = w.asterisk.log().length;
    const outcome = await dtmfCall({
      dialled: dev.maskedAs,
      callerUser: 'anonymous',
      steps: [
        { pauseMs: FIRST_TRY_AFTER_MS },
        { dtmf: `${dev.pin}#`, toneMs: TONE_MS },
        { pauseMs: NEXT_TRY_AFTER_MS },
        { dtmf: `${bob.pin}#`, toneMs: TONE_MS },
        { pauseMs: NEXT_TRY_AFTER_MS },
        { dtmf: '0000000#', toneMs: TONE_MS },
      ],
      holdMs: 8_000,
    });
    expectNoBridge(outcome);
    expect(outcome.caller.hungUpBy, detail(outcome)).toBe('asterisk');
    const log = logSince(before);
    expect(log).toContain('refused PIN_FAILED');
    expect((log.match(/AGI\("[^"]*", "[^"]*pin,/g) ?? []).length).toBe(3);
  }, CALL_TIMEOUT_MS);

  it('Alice on a relative\'s phone, on a number that asks every caller without a bridge: her PIN reaches Dev, and nothing of the relative\'s number does', async () => {
    const w = world!;
    const [alice, dev] = w.order.parties;
    w.db.poolSet(dev.maskedAs, '--pin', 'all');
    try {
      const outcome = await typingPin(dev.maskedAs, RELATIVE, alice.pin!, 4_000);
      expect(outcome.invites, detail(outcome)).toHaveLength(1);
      expect(uriUser(outcome.invites[0]!.requestUri)).toBe(DEV);
      expect(uriUser(outcome.invites[0]!.header('From'))).toBe(alice.maskedAs);
      expect(findLeaks(outcome.callee, REAL.filter((n) => n !== DEV)), detail(outcome)).toEqual([]);
      expect(findLeaks(outcome.caller.received, REAL.filter((n) => n !== RELATIVE), ownHeaders(outcome.caller)), detail(outcome)).toEqual([]);
    } finally {
      w.db.poolSet(dev.maskedAs, '--pin', 'default');
    }
  }, CALL_TIMEOUT_MS);

  it('after the session ended its party hears the ENDED announcement; a stranger hears NO_SESSION\'s; each refusal is counted, without a caller\'s number', async () => {
    const w = world!;
    const [, devForBob] = w.ended.parties;
    const [, dev] = w.order.parties;
    const before = w.asterisk.log().length;
    const ended = await callThrough(w.asterisk, { dialled: devForBob.maskedAs, callerUser: BOB });
    const endedLog = logSince(before);
    const middle = w.asterisk.log().length;
    const unknown = await callThrough(w.asterisk, { dialled: dev.maskedAs, callerUser: STRANGER });
    const unknownLog = logSince(middle);
    for (const outcome of [ended, unknown]) {
      expect(outcome.callee, detail(outcome)).toEqual([]);
      expect(outcome.caller.finalStatus, detail(outcome)).toBe(404);
      expect(outcome.caller.received.some((m) => m.status === 200 && m.cseqMethod === 'INVITE')).toBe(false);
      expect(findLeaks(outcome.caller.received, REAL, ownHeaders(outcome.caller)), detail(outcome)).toEqual([]);
    }
    // Told apart by what is played (the stock defaults: vm-goodbye for ENDED, ss-noservice for NO_SESSION).
    expect(endedLog).toMatch(/refused ENDED on \S+ with vm-goodbye/);
    expect(endedLog).toMatch(/Playback\("[^"]*", "vm-goodbye,noanswer"\)/);
    expect(unknownLog).toMatch(/refused NO_SESSION on \S+ with ss-noservice/);
    expect(unknownLog).toMatch(/Playback\("[^"]*", "ss-noservice,noanswer"\)/);
    // Counted per pool number and reason, in the database.
    const counts = () => {
      const db = new Database(w.db.file, { readonly: true });
      try {
        return db.prepare('SELECT dialled, reason, count FROM refusal ORDER BY dialled, reason').all() as Array<{ dialled: string; reason: string; count: number }>;
      } finally {
        db.close();
      }
    };
    await until(() => counts().some((r) => r.reason === 'ENDED' && r.dialled === devForBob.maskedAs), 5_000);
    expect(counts()).toEqual(expect.arrayContaining([expect.objectContaining({ dialled: dev.maskedAs, reason: 'NO_SESSION' })]));
    expect(JSON.stringify(counts())).not.toMatch(/1314960999|1184960555/);
    // The router's log names the pool number and the reason, never the caller.
    const routerLog = w.router.lines().join('\n');
    expect(routerLog).toContain('call without a bridge refused');
    for (const n of [BOB, STRANGER]) expect(routerLog).not.toContain(n.slice(-9));
  }, CALL_TIMEOUT_MS);

  it('the desk: a refused caller on a number set to fallback reaches the operator\'s desk, presented as the dialled number; no real number in any header either side', async () => {
    const w = world!;
    const [, dev] = w.order.parties;
    w.db.poolSet(dev.maskedAs, '--out-of-session', 'fallback');
    let outcome: CallOutcome;
    try {
      outcome = await callThrough(w.asterisk, {
        dialled: dev.maskedAs,
        callerUser: STRANGER,
        callerName: 'Stranger Real',
        extraHeaders: identityHeaders(STRANGER),
        holdMs: 500,
      });
    } finally {
      w.db.poolSet(dev.maskedAs, '--out-of-session', 'default');
    }
    expect(outcome.invites, detail(outcome)).toHaveLength(1);
    const invite = outcome.invites[0]!;
    expect(uriUser(invite.requestUri)).toBe(DESK);
    expect(uriUser(invite.header('From'))).toBe(dev.maskedAs);
    expect(invite.header('From')).not.toContain('Stranger');
    for (const id of [...invite.headerAll('P-Asserted-Identity'), ...invite.headerAll('Remote-Party-ID')]) expect(uriUser(id)).toBe(dev.maskedAs);
    expect(outcome.caller.finalStatus, detail(outcome)).toBe(200);
    // Every message either side received, every real number of the scenario.
    expect(findLeaks(outcome.callee, REAL), detail(outcome)).toEqual([]);
    expect(findLeaks(outcome.caller.received, REAL.filter((n) => n !== STRANGER), ownHeaders(outcome.caller)), detail(outcome)).toEqual([]);
    expect(findLeaks(outcome.caller.received, [DEV, ALICE, ZOE, BOB, RELATIVE]), detail(outcome)).toEqual([]);
  }, CALL_TIMEOUT_MS);

  it('bad input: a DTMF flood, * and # in odd places, PINs of the wrong length, a caller who never types: refused, never bridged', async () => {
    const w = world!;
    const [alice, dev] = w.order.parties;
    const pin = alice.pin!;
    const cases: Array<{ what: string; steps: DtmfCall['steps']; holdMs: number }> = [
      { what: 'flood', steps: [{ pauseMs: FIRST_TRY_AFTER_MS }, { dtmf: '1234567890'.repeat(4), toneMs: 60 }], holdMs: 12_000 },
      {
        what: '* and #',
        steps: [
          { pauseMs: FIRST_TRY_AFTER_MS }, { dtmf: '#', toneMs: TONE_MS },
          { pauseMs: NEXT_TRY_AFTER_MS }, { dtmf: `*${pin}#`, toneMs: TONE_MS },
          { pauseMs: NEXT_TRY_AFTER_MS }, { dtmf: `${pin.slice(0, 3)}*${pin.slice(3)}#`, toneMs: TONE_MS },
        ],
        holdMs: 8_000,
      },
      {
        what: 'wrong length',
        steps: [
          { pauseMs: FIRST_TRY_AFTER_MS }, { dtmf: `${pin.slice(0, 5)}#`, toneMs: TONE_MS },
          { pauseMs: NEXT_TRY_AFTER_MS }, { dtmf: `${pin}${pin}#`, toneMs: TONE_MS },
          { pauseMs: NEXT_TRY_AFTER_MS + 600 }, { dtmf: `${pin}0#`, toneMs: TONE_MS },
        ],
        holdMs: 8_000,
      },
      // Never types: the 20 s PIN phase ends it (VNUM_PIN_TIMEOUT), if three empty tries have not already.
      { what: 'silent', steps: [], holdMs: 30_000 },
    ];
    for (const c of cases) {
      const before = w.asterisk.log().length;
      const outcome = await dtmfCall({ dialled: dev.maskedAs, callerUser: 'anonymous', steps: c.steps, holdMs: c.holdMs });
      expectNoBridge(outcome);
      expect(outcome.caller.hungUpBy, `${c.what}\n${detail(outcome)}`).toBe('asterisk');
      expect(logSince(before), c.what).toMatch(/refused PIN_(FAILED|TIMEOUT)/);
    }
  }, 150_000);

  it('a router answer with dialplan metacharacters in its sounds or PIN settings: the dialplan plays its own defaults or refuses, never dials', async () => {
    const w = world!;
    const [, dev] = w.order.parties;
    await w.router.stop();
    try {
      const hostile = 'ss-noservice,1)&Dial(PJSIP/+441614960456@carrier)';
      let stub = await startAgiStub(() => ({ kind: 'mset', vars: { VNUM_STATUS: 'NO_SESSION', VNUM_SOUND: hostile } }));
      let before = w.asterisk.log().length;
      let outcome = await callThrough(w.asterisk, { dialled: dev.maskedAs, callerUser: STRANGER });
      await stub.close();
      expect(outcome.callee, detail(outcome)).toEqual([]);
      expect(outcome.caller.finalStatus).toBe(404);
      expect(logSince(before)).toMatch(/refused NO_SESSION on \S+ with ss-noservice\n/);
      // A PIN answer whose settings are out of range or not numbers: refused as a bad answer, 503.
      for (const vars of [
        { VNUM_STATUS: 'PIN', VNUM_PIN_DIGITS: '-5', VNUM_PIN_DIGIT_TIMEOUT: '3', VNUM_PIN_TIMEOUT: '20' },
        { VNUM_STATUS: 'PIN', VNUM_PIN_DIGITS: '12', VNUM_PIN_DIGIT_TIMEOUT: '3', VNUM_PIN_TIMEOUT: '99999' },
        { VNUM_STATUS: 'PIN', VNUM_PIN_DIGITS: '12)', VNUM_PIN_DIGIT_TIMEOUT: '3', VNUM_PIN_TIMEOUT: '20' },
      ]) {
        stub = await startAgiStub(() => ({ kind: 'mset', vars }));
        before = w.asterisk.log().length;
        outcome = await callThrough(w.asterisk, { dialled: dev.maskedAs, callerUser: 'anonymous' });
        await stub.close();
        expect(outcome.callee, detail(outcome)).toEqual([]);
        expect(outcome.caller.finalStatus, JSON.stringify(vars)).toBe(503);
        expect(logSince(before)).toContain('router answer failed the number check');
      }
    } finally {
      w.router = await startServe({ db: w.db.file, port: ports.router, env: ROUTER_ENV });
    }
  }, CALL_TIMEOUT_MS);
});
