/**
 * End to end: callers without a bridge through the real Asterisk 22 and the
 * project's dialplan/vnum.conf, routed by the built `vnum serve`: PINs typed
 * as RFC 2833 DTMF (sipp's play_dtmf, payload type 96), the ENDED and
 * NO_SESSION announcements told apart, and the operator's desk as the
 * fallback. sipp on both sides; every message either side received is
 * scanned for real numbers (test/support/leaks.ts), as the routing suite does.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { Asterisk } from '../support/asterisk/asterisk.js';
import { ports } from '../support/asterisk/paths.js';
import { VnumDb, type SessionJson } from '../support/cli.js';
import { findLeaks } from '../support/leaks.js';
import { startServe } from '../support/serve.js';
import { describeMessages, uriUser, type SipMessage } from '../support/sip/messages.js';
import { placeDtmfCall, type DtmfCall, type DtmfResult } from '../support/sip/dtmf.js';
import { callThrough, startUas, type UasOptions } from '../support/sip/sipp.js';
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
const REAL = [ALICE, DEV, ZOE, BOB, STRANGER, RELATIVE];

const CALL_TIMEOUT_MS = 60_000;
/** PINs end with #; 100 ms tones: a 7-digit PIN takes 1.6 s to send. */
const TONE_MS = 100;
/** After the answer, the prompt starts; digits typed into it stop it (Read's prompt takes barge-in). */
const FIRST_TRY_AFTER_MS = 800;
/** Between tries: the PIN sent, the router's answer, the 0.44 s beep (--sound-pin-wrong beep), the prompt again. */
const NEXT_TRY_AFTER_MS = 2_600;

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

function detail(outcome: { caller: DtmfResult; callee: SipMessage[] }): string {
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
    const asterisk = await Asterisk.start();
    const router = await startServe({
      db: db.file,
      port: ports.router,
      env: {
        VNUM_PIN: 'withheld',
        VNUM_FALLBACK: DESK,
        VNUM_PIN_ATTEMPTS: '3',
        VNUM_PIN_TIMEOUT: '20s',
        VNUM_PIN_DIGIT_TIMEOUT: '3s',
        VNUM_SOUND_PIN_WRONG: 'beep',
      },
    });
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
    const outcome = await dtmfCall({
      dialled: dev.maskedAs,
      callerUser: 'anonymous',
      steps: [{ pauseMs: FIRST_TRY_AFTER_MS }, { dtmf: `${alice.pin}#`, toneMs: TONE_MS }],
      holdMs: 4_000,
    });
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
});
