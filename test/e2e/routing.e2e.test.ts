/**
 * End to end: real SIP calls through a real Asterisk 22 running the
 * project's dialplan/vnum.conf unchanged, routed by the product (the built
 * CLI's database and router), with sipp as the carrier on both sides.
 *
 *   carrier-in  (sipp UAC, 127.0.0.1:5061) --INVITE--> Asterisk (127.0.0.1:5060)
 *   Asterisk --FastAGI--> router (127.0.0.1:4573)
 *   Asterisk --INVITE--> carrier-out (sipp UAS, 127.0.0.1:5062)
 *
 * Every case asserts on the SIP messages each side received.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startAgiStub, type AgiStub } from '../support/asterisk/agi-stub.js';
import { Asterisk, carrierPjsipConf, leakyTrunkIdentity, type AsteriskOptions } from '../support/asterisk/asterisk.js';
import { ports } from '../support/asterisk/paths.js';
import { VnumDb, type SessionJson } from '../support/cli.js';
import { repoRoot } from '../support/repo.js';
import { startServe, type Serve } from '../support/serve.js';
import { findLeaks } from '../support/leaks.js';
import { describeMessages, uriUser } from '../support/sip/messages.js';
import { callThrough as call, type CallOutcome, type UacResult, type UasOptions } from '../support/sip/sipp.js';
import { e2eSuite } from '../support/suite.js';
import { stopWorld, type World as SharedWorld } from '../support/world.js';

// UK drama-range numbers that libphonenumber-js considers valid.
const POOL = Array.from({ length: 10 }, (_, i) => `+4420794600${String(i + 1).padStart(2, '0')}`);
const ALICE = '+441134960123'; // customer
const DEV = '+441614960456'; // delivery agent
const ZOE = '+441174960789'; // the agent's other customer
const GRACE_CUSTOMER = '+441184960555';
const STRANGER = '+441314960999'; // in no session
const EVE = '+441514960321'; // someone a carrier asserts mid-call
const OFFICE_DID = '+442079460999'; // the operator's own DID on the same trunk, not in the pool
const PREMIUM = '+449098790000'; // UK premium rate: a customer who earns on every call made to them

/** Every real number of the scenario: none may reach a party it is not theirs. */
const REAL = [ALICE, DEV, ZOE, GRACE_CUSTOMER, STRANGER, EVE];

const CALL_TIMEOUT_MS = 30_000;

/** The masked numbers of a session, by party. */
function masks(session: SessionJson): { first: string; second: string } {
  return { first: session.parties[0].maskedAs, second: session.parties[1].maskedAs };
}

function expectBridged(
  outcome: CallOutcome,
  expected: { target: string; presented: string; callerReal: string; calleeReal: string },
): void {
  const detail = `caller received:\n${describeMessages(outcome.caller.received)}\ncallee received:\n${describeMessages(outcome.callee)}`;
  expect(outcome.invites, detail).toHaveLength(1);
  const invite = outcome.invites[0]!;
  // The callee's real number rings...
  expect(uriUser(invite.requestUri)).toBe(expected.target);
  // ...presented with the caller's masked number, name and number.
  expect(uriUser(invite.header('From'))).toBe(expected.presented);
  expect(invite.header('From')?.startsWith(`"${expected.presented}" <`)).toBe(true);
  for (const id of [...invite.headerAll('P-Asserted-Identity'), ...invite.headerAll('Remote-Party-ID')]) {
    expect(uriUser(id)).toBe(expected.presented);
  }
  // The caller was connected.
  expect(outcome.caller.finalStatus, detail).toBe(200);
  // No real number but the callee's own reached the callee; none but the
  // caller's own reached the caller.
  expect(findLeaks(outcome.callee, REAL.filter((n) => n !== expected.calleeReal)), detail).toEqual([]);
  expect(findLeaks(outcome.caller.received, REAL.filter((n) => n !== expected.callerReal), ownHeaders(outcome.caller)), detail).toEqual([]);
}

function expectRefused(outcome: CallOutcome, finalStatus: number): void {
  const detail = `caller received:\n${describeMessages(outcome.caller.received)}\ncallee received:\n${describeMessages(outcome.callee)}`;
  // Never a dial.
  expect(outcome.callee, detail).toEqual([]);
  // An announcement as early media, never an answer, then the final error.
  const progress = outcome.caller.received.find((m) => m.status === 183);
  expect(progress, detail).toBeDefined();
  expect(progress!.header('Content-Type')).toBe('application/sdp');
  expect(progress!.body).toMatch(/^m=audio \d+ RTP\/AVP/m);
  expect(outcome.caller.received.some((m) => m.status === 200 && m.cseqMethod === 'INVITE')).toBe(false);
  expect(outcome.caller.finalStatus, detail).toBe(finalStatus);
  expect(findLeaks(outcome.caller.received, REAL, ownHeaders(outcome.caller)), detail).toEqual([]);
}

/** The From and To the caller sent: SIP echoes them back, and they are the caller's own. */
function ownHeaders(caller: UacResult): string[] {
  const invite = caller.messages.find((m) => m.direction === 'sent' && m.method === 'INVITE');
  return [invite?.header('From'), invite?.header('To')].filter((v): v is string => v !== undefined);
}

/** INVITE to the first 183 and to the final response, from sipp's own clock. */
function timings(caller: UacResult): { toProgress: number | null; toFinal: number | null } {
  const sent = caller.messages.find((m) => m.direction === 'sent' && m.method === 'INVITE')?.at ?? null;
  const progress = caller.received.find((m) => m.status === 183)?.at ?? null;
  const final = caller.received.find((m) => m.status >= 200 && m.cseqMethod === 'INVITE')?.at ?? null;
  return {
    toProgress: sent !== null && progress !== null ? progress - sent : null,
    toFinal: sent !== null && final !== null ? final - sent : null,
  };
}

/** The product's own router on the port vnum.conf asks by default. */
function startRouter(db: VnumDb, options: { env?: Record<string, string> } = {}): Promise<Serve> {
  return startServe({ db: db.file, port: ports.router, ...options });
}

interface World extends SharedWorld {
  order: SessionJson; // ALICE (first) and DEV (second)
}

async function startWorld(options: AsteriskOptions = {}): Promise<World> {
  const db = new VnumDb({ VNUM_DEFAULT_COUNTRY: 'GB' });
  db.poolAdd(POOL);
  // The agent already serves Zoe: the pool must give Alice's side a number
  // Dev does not already dial, so the two masked numbers of the order differ.
  db.createSession('order-zoe', ZOE, DEV);
  const order = db.createSession('order-alice', ALICE, DEV);
  const asterisk = await Asterisk.start(options);
  const router = await startRouter(db);
  return { asterisk, db, router, order };
}


e2eSuite('calls through Asterisk 22 with the vnum dialplan', () => {
  let world: World | undefined;

  beforeAll(async () => {
    world = await startWorld();
  });
  afterAll(async () => stopWorld(world));
  afterEach(async () => {
    // No call may outlive its test (a lingering channel would skew the next).
    await world?.asterisk.waitIdle();
  });

  it('1. A calls D\'s masked number: D\'s real number rings, presented with A\'s masked number', async () => {
    const w = world!;
    const { first: aliceMasked, second: devMasked } = masks(w.order);
    expect(aliceMasked).not.toBe(devMasked);
    const outcome = await call(w.asterisk, { dialled: devMasked, callerUser: ALICE, callerName: 'Alice Real' });
    expectBridged(outcome, { target: DEV, presented: aliceMasked, callerReal: ALICE, calleeReal: DEV });
    // The caller's name went the way of the number.
    expect(outcome.invites[0]!.header('From')).not.toContain('Alice');
  }, CALL_TIMEOUT_MS);

  it('2. D calls A\'s masked number: the mirror case', async () => {
    const w = world!;
    const { first: aliceMasked, second: devMasked } = masks(w.order);
    const outcome = await call(w.asterisk, { dialled: aliceMasked, callerUser: DEV, callerName: 'Dev Real' });
    expectBridged(outcome, { target: ALICE, presented: devMasked, callerReal: DEV, calleeReal: ALICE });
  }, CALL_TIMEOUT_MS);

  it('3. the caller as +E.164, national with a trunk 0, and digits without + all route alike', async () => {
    const w = world!;
    const { first: aliceMasked, second: devMasked } = masks(w.order);
    const variants: { callerUser: string; dialled: string }[] = [
      { callerUser: '+441134960123', dialled: devMasked },
      { callerUser: '01134960123', dialled: devMasked },
      { callerUser: '441134960123', dialled: devMasked },
      // The DID in the carrier's formats too.
      { callerUser: '01134960123', dialled: devMasked.slice(1) },
      { callerUser: '441134960123', dialled: `0${devMasked.slice(3)}` },
    ];
    for (const v of variants) {
      const outcome = await call(w.asterisk, { ...v, callerName: 'Alice' });
      expectBridged(outcome, { target: DEV, presented: aliceMasked, callerReal: ALICE, calleeReal: DEV });
    }
  }, 60_000);

  it('4. a number in no session calling a pool DID: no outbound INVITE, an announcement and a final error', async () => {
    const w = world!;
    const { second: devMasked } = masks(w.order);
    for (const dialled of [devMasked, POOL[9]!]) {
      const outcome = await call(w.asterisk, { dialled, callerUser: STRANGER });
      // ss-noservice, then cause 1 (unallocated number) = 404.
      expectRefused(outcome, 404);
    }
  }, CALL_TIMEOUT_MS);

  it('4b. a DID that is not a pool number, without VNUM_OTHER_CONTEXT: refused as without a session, whoever calls', async () => {
    const w = world!;
    for (const callerUser of [ALICE, STRANGER, 'anonymous']) {
      const outcome = await call(w.asterisk, { dialled: OFFICE_DID, callerUser });
      expectRefused(outcome, 404);
    }
  }, CALL_TIMEOUT_MS);

  it('5. a released session routes during its grace period, and not after it ends', async () => {
    const w = world!;
    const session = w.db.createSession('order-grace', GRACE_CUSTOMER, DEV);
    const { first: customerMasked, second: devMasked } = masks(session);
    const graceMs = 4_000;
    w.db.release('order-grace', `${graceMs / 1000}s`);
    const releasedAt = Date.now();

    const during = await call(w.asterisk, { dialled: devMasked, callerUser: GRACE_CUSTOMER });
    expect(Date.now() - releasedAt).toBeLessThan(graceMs);
    expectBridged(during, { target: DEV, presented: customerMasked, callerReal: GRACE_CUSTOMER, calleeReal: DEV });

    await new Promise((r) => setTimeout(r, Math.max(0, releasedAt + graceMs + 500 - Date.now())));
    const after = await call(w.asterisk, { dialled: devMasked, callerUser: GRACE_CUSTOMER });
    expectRefused(after, 404);
    // The other direction ended with it.
    const back = await call(w.asterisk, { dialled: customerMasked, callerUser: DEV });
    expectRefused(back, 404);
  }, CALL_TIMEOUT_MS);

  it('the callee busy or unavailable: the caller gets busy or unavailable, and nothing else of the far end\'s answer', async () => {
    const w = world!;
    const { second: devMasked } = masks(w.order);
    for (const [farEnd, expected] of [
      [486, 486], // busy: cause 17
      [480, 480], // no answer/unavailable: cause 19
      [503, 503], // anything else: cause 34
      [404, 503],
    ] as const) {
      const outcome = await call(
        w.asterisk,
        { dialled: devMasked, callerUser: ALICE },
        { rejectWith: farEnd, responseHeaders: [`P-Asserted-Identity: <sip:${DEV}@127.0.0.1>`, 'Warning: 399 far-end "secret detail"'] },
      );
      expect(outcome.invites).toHaveLength(1);
      expect(outcome.caller.finalStatus).toBe(expected);
      const final = outcome.caller.received.find((m) => m.status === expected)!;
      expect(final.startLine).not.toContain('Rejected');
      expect(final.header('Warning')).toBeUndefined();
      expect(findLeaks(outcome.caller.received, REAL.filter((n) => n !== ALICE), ownHeaders(outcome.caller))).toEqual([]);
    }
  }, 60_000);

  describe('6. the router failing', () => {
    let stub: AgiStub | undefined;
    afterEach(async () => {
      await stub?.close();
      stub = undefined;
    });
    afterAll(async () => {
      // Later cases need the real router back.
      world!.router = await startRouter(world!.db);
    });

    it('router stopped: refused at once, no outbound INVITE', async () => {
      const w = world!;
      await w.router.stop();
      const { second: devMasked } = masks(w.order);
      const outcome = await call(w.asterisk, { dialled: devMasked, callerUser: ALICE });
      // all-circuits-busy-now, then cause 34 (no circuit) = 503.
      expectRefused(outcome, 503);
      const t = timings(outcome.caller);
      // Connection refused is immediate: no waiting on the router at all.
      expect(t.toProgress).toBeLessThan(1_000);
      expect(t.toFinal).toBeLessThan(5_000);
    }, CALL_TIMEOUT_MS);

    it('router accepts but never answers: refused after VNUM_AGI_TIMEOUT (3 s), no outbound INVITE', async () => {
      const w = world!;
      stub = await startAgiStub(() => ({ kind: 'stall' }));
      const { second: devMasked } = masks(w.order);
      const outcome = await call(w.asterisk, { dialled: devMasked, callerUser: ALICE });
      expect(stub.sessions).toHaveLength(1);
      expectRefused(outcome, 503);
      const t = timings(outcome.caller);
      // The bound is the default VNUM_AGI_TIMEOUT of 3 s: not before, barely after.
      expect(t.toProgress).toBeGreaterThanOrEqual(2_900);
      expect(t.toProgress).toBeLessThan(3_600);
      // Then the announcement (~2 s) and the final response.
      expect(t.toFinal).toBeLessThan(7_000);
    }, CALL_TIMEOUT_MS);

    it('router hangs up without an answer, or answers ERROR or nonsense: refused', async () => {
      const w = world!;
      const { second: devMasked } = masks(w.order);
      const answers: (() => Parameters<typeof startAgiStub>[0])[] = [
        () => () => ({ kind: 'close' }),
        () => () => ({ kind: 'mset', vars: { VNUM_STATUS: 'ERROR' } }),
        () => () => ({ kind: 'mset', vars: { VNUM_STATUS: 'MAYBE', VNUM_TARGET: DEV, VNUM_CLI: POOL[0]! } }),
        () => () => ({ kind: 'mset', vars: { VNUM_STATUS: 'bridge', VNUM_TARGET: DEV, VNUM_CLI: POOL[0]! } }),
        // BRIDGE without a target or a caller ID to present.
        () => () => ({ kind: 'mset', vars: { VNUM_STATUS: 'BRIDGE', VNUM_CLI: POOL[0]! } }),
        () => () => ({ kind: 'mset', vars: { VNUM_STATUS: 'BRIDGE', VNUM_TARGET: DEV } }),
      ];
      for (const answer of answers) {
        stub = await startAgiStub(answer());
        const outcome = await call(w.asterisk, { dialled: devMasked, callerUser: ALICE });
        expect(stub.sessions).toHaveLength(1);
        expectRefused(outcome, 503);
        await stub.close();
        stub = undefined;
      }
    }, 60_000);
  });

  describe('7. injection attempts', () => {
    it('hostile caller IDs never alter or add a dial', async () => {
      const w = world!;
      const { second: devMasked } = masks(w.order);
      const hostile = [
        // @ is escaped in the SIP URI; Asterisk sees it unescaped.
        '1&PJSIP/+441514960321%40carrier',
        `${ALICE}&PJSIP/+441514960321%40carrier`,
        // Percent-escaped in the URI; Asterisk sees the quote, comma and parentheses.
        '%22+441134960123%22,(PJSIP/x)',
        `${ALICE},60,(b)`,
        `+44${'1'.repeat(300)}`,
      ];
      for (const callerUser of hostile) {
        const outcome = await call(w.asterisk, { dialled: devMasked, callerUser });
        // The router refuses them as invalid numbers: cannot-complete-as-dialed, 484.
        expectRefused(outcome, 484);
      }
    }, 90_000);

    it('a hostile caller name with a real caller number: exactly one dial, to D, with nothing of the name', async () => {
      const w = world!;
      const { first: aliceMasked, second: devMasked } = masks(w.order);
      const outcome = await call(w.asterisk, {
        dialled: devMasked,
        callerUser: ALICE,
        callerName: 'Evil\\", PJSIP/+441514960321@carrier (x) & 1',
      });
      expectBridged(outcome, { target: DEV, presented: aliceMasked, callerReal: ALICE, calleeReal: DEV });
      expect(outcome.invites[0]!.header('From')).not.toMatch(/Evil|PJSIP/);
    }, CALL_TIMEOUT_MS);

    it('hostile dialled numbers never alter or add a dial', async () => {
      const w = world!;
      const { second: devMasked } = masks(w.order);
      for (const dialled of [`${devMasked}&PJSIP/+441514960321%40carrier`, `${devMasked},1`, `${devMasked}(x)`]) {
        const outcome = await call(w.asterisk, { dialled, callerUser: ALICE });
        // No pool number looks like that: NOT_POOL, refused as without a session
        // (ss-noservice, 404) when no VNUM_OTHER_CONTEXT takes such calls.
        expectRefused(outcome, 404);
      }
    }, CALL_TIMEOUT_MS);

    it('a router answer carrying an injection is refused by the dialplan itself', async () => {
      const w = world!;
      await w.router.stop();
      const { second: devMasked } = masks(w.order);
      const evil = [
        { VNUM_TARGET: `${DEV}&PJSIP/${EVE}@carrier`, VNUM_CLI: POOL[0]! },
        { VNUM_TARGET: DEV, VNUM_CLI: `${POOL[0]!}&PJSIP/${EVE}@carrier` },
        { VNUM_TARGET: `${DEV}"`, VNUM_CLI: POOL[0]! },
        { VNUM_TARGET: `${DEV})`, VNUM_CLI: POOL[0]! },
        { VNUM_TARGET: `${DEV},1`, VNUM_CLI: POOL[0]! },
        { VNUM_TARGET: DEV.slice(1), VNUM_CLI: POOL[0]! },
        { VNUM_TARGET: `+${'4'.repeat(40)}`, VNUM_CLI: POOL[0]! },
        { VNUM_TARGET: `+44+${DEV.slice(3)}`, VNUM_CLI: POOL[0]! },
      ];
      try {
        for (const vars of evil) {
          const stub = await startAgiStub(() => ({ kind: 'mset', vars: { VNUM_STATUS: 'BRIDGE', VNUM_SESSION: 'x', ...vars } }));
          try {
            const outcome = await call(w.asterisk, { dialled: devMasked, callerUser: ALICE });
            expect(stub.sessions).toHaveLength(1);
            expectRefused(outcome, 503);
          } finally {
            await stub.close();
          }
        }
      } finally {
        w.router = await startRouter(w.db);
      }
    }, 90_000);
  });
});

// A far end (and a caller's carrier) that asserts identities in every way SIP allows.
const CALLEE_ASSERTS = (real: string): UasOptions => ({
  earlyMedia: true,
  responseHeaders: [
    `P-Asserted-Identity: "Real Callee" <sip:${real}@127.0.0.1>`,
    `Remote-Party-ID: "Real Callee" <sip:${real}@127.0.0.1>;party=called;privacy=off;screen=yes`,
  ],
});
const CALLER_ASSERTS = (real: string): string[] => [
  `P-Asserted-Identity: "Real Caller" <sip:${real}@127.0.0.1>`,
  `Remote-Party-ID: "Real Caller" <sip:${real}@127.0.0.1>;party=calling;privacy=off;screen=yes`,
  // Forwarded to this DID from one of the caller's other numbers.
  `Diversion: <sip:${EVE}@127.0.0.1>;reason=unconditional;counter=1`,
];

e2eSuite('8. a trunk with every identity header on (send_pai, send_rpid, trust_id_outbound, trust_id_inbound)', () => {
  let world: World | undefined;

  beforeAll(async () => {
    world = await startWorld({ trunk: leakyTrunkIdentity });
  });
  afterAll(async () => stopWorld(world));
  afterEach(async () => world?.asterisk.waitIdle());

  it('A calls D and D calls A: no real number reaches the other party in any message', async () => {
    const w = world!;
    const { first: aliceMasked, second: devMasked } = masks(w.order);
    const directions = [
      { caller: ALICE, callee: DEV, dialled: devMasked, presented: aliceMasked },
      { caller: DEV, callee: ALICE, dialled: aliceMasked, presented: devMasked },
    ];
    for (const d of directions) {
      const outcome = await call(
        w.asterisk,
        { dialled: d.dialled, callerUser: d.caller, callerName: 'Real Caller', extraHeaders: CALLER_ASSERTS(d.caller) },
        CALLEE_ASSERTS(d.callee),
      );
      expectBridged(outcome, { target: d.callee, presented: d.presented, callerReal: d.caller, calleeReal: d.callee });
      const invite = outcome.invites[0]!;
      // The trunk does send identity headers: they carry the masked number.
      expect(uriUser(invite.header('P-Asserted-Identity'))).toBe(d.presented);
      expect(uriUser(invite.header('Remote-Party-ID'))).toBe(d.presented);
      expect(invite.header('Diversion')).toBeUndefined();
      expect(invite.header('History-Info')).toBeUndefined();
      // The caller saw 183, 180/183 and 200, and what identity they carried is the DID dialled.
      const responses = outcome.caller.received.filter((m) => m.kind === 'response' && m.cseqMethod === 'INVITE');
      expect(responses.map((m) => m.status)).toEqual(expect.arrayContaining([183, 200]));
      for (const m of outcome.caller.received) {
        for (const id of [...m.headerAll('P-Asserted-Identity'), ...m.headerAll('Remote-Party-ID')]) {
          expect(uriUser(id)).toBe(d.dialled);
        }
      }
    }
  }, 60_000);

  it('the callee\'s carrier asserts someone else mid-call: the caller is updated with the DID only', async () => {
    const w = world!;
    const { first: aliceMasked, second: devMasked } = masks(w.order);
    const outcome = await call(
      w.asterisk,
      { dialled: devMasked, callerUser: ALICE, holdMs: 2_000 },
      { ...CALLEE_ASSERTS(DEV), reinviteHeaders: [`P-Asserted-Identity: "Transferred" <sip:${EVE}@127.0.0.1>`] },
    );
    expectBridged(outcome, { target: DEV, presented: aliceMasked, callerReal: ALICE, calleeReal: DEV });
    // The change did travel to the caller (an UPDATE or re-INVITE)...
    const updates = outcome.caller.received.filter((m) => m.method === 'UPDATE' || m.method === 'INVITE');
    expect(updates.length, describeMessages(outcome.caller.received)).toBeGreaterThan(0);
    // ...carrying the DID dialled, never the new party's real number.
    for (const m of updates) {
      expect(uriUser(m.header('P-Asserted-Identity'))).toBe(devMasked);
    }
  }, CALL_TIMEOUT_MS);

  it('the caller\'s carrier asserts someone else mid-call: the callee is updated with the masked number only', async () => {
    const w = world!;
    const { first: aliceMasked, second: devMasked } = masks(w.order);
    const outcome = await call(
      w.asterisk,
      {
        dialled: devMasked,
        callerUser: ALICE,
        holdMs: 2_000,
        reinviteHeaders: [`P-Asserted-Identity: "Transferred" <sip:${EVE}@127.0.0.1>`],
      },
      CALLEE_ASSERTS(DEV),
    );
    expectBridged(outcome, { target: DEV, presented: aliceMasked, callerReal: ALICE, calleeReal: DEV });
    const inDialog = outcome.callee.filter(
      (m) => (m.method === 'UPDATE' || m.method === 'INVITE') && /;\s*tag=/i.test(m.header('To') ?? ''),
    );
    expect(inDialog.length, describeMessages(outcome.callee)).toBeGreaterThan(0);
    for (const m of inDialog) {
      expect(uriUser(m.header('P-Asserted-Identity'))).toBe(aliceMasked);
    }
  }, CALL_TIMEOUT_MS);

  it('control: a naive dialplan on the same trunk leaks, so these checks can fail', async () => {
    // The checks above pass because of dialplan/vnum.conf, not because the
    // harness cannot see a leak: the same call through a dialplan that only
    // sets CALLERID and dials shows real numbers to both parties.
    const w = world!;
    await w.asterisk.stop();
    w.asterisk = await Asterisk.start({
      trunk: leakyTrunkIdentity,
      dialplanFile: path.join(repoRoot, 'test/e2e/fixtures/naive-vnum.conf'),
    });
    try {
      const { second: devMasked } = masks(w.order);
      const outcome = await call(
        w.asterisk,
        { dialled: devMasked, callerUser: ALICE, extraHeaders: CALLER_ASSERTS(ALICE) },
        CALLEE_ASSERTS(DEV),
      );
      expect(outcome.invites).toHaveLength(1);
      expect(findLeaks(outcome.caller.received, [DEV])).not.toEqual([]);
      expect(findLeaks(outcome.callee, [EVE])).not.toEqual([]);
    } finally {
      await w.asterisk.stop();
      w.asterisk = await Asterisk.start({ trunk: leakyTrunkIdentity });
    }
  }, CALL_TIMEOUT_MS);
});

e2eSuite('VNUM_NUMBER_FORMAT: the trunk\'s number format for the dialled number and the presented caller ID', () => {
  let world: World | undefined;
  afterEach(async () => {
    await stopWorld(world);
    world = undefined;
  });

  for (const [format, shape] of [
    ['digits', (e164: string) => e164.slice(1)],
    ['00', (e164: string) => `00${e164.slice(1)}`],
  ] as const) {
    it(`${format}`, async () => {
      world = await startWorld({ globals: { VNUM_NUMBER_FORMAT: format } });
      const { first: aliceMasked, second: devMasked } = masks(world.order);
      const outcome = await call(world.asterisk, { dialled: devMasked, callerUser: ALICE });
      expectBridged(outcome, { target: shape(DEV), presented: shape(aliceMasked), callerReal: ALICE, calleeReal: DEV });
    }, CALL_TIMEOUT_MS);
  }

  // FILTER() reads a trailing `-` in its set as a range with nothing after it
  // and drops every `-`: the trunk check once refused a trunk whose name has
  // one. The leg to the callee goes out through `carrier-out`, a second
  // endpoint to the same test carrier.
  it('a trunk whose name contains - routes (VNUM_TRUNK=carrier-out)', async () => {
    const extra = `
[carrier-out]
type = endpoint
transport = transport-udp
context = vnum-inbound
disallow = all
allow = ulaw,alaw
aors = carrier-out
direct_media = no

[carrier-out]
type = aor
contact = sip:127.0.0.1:${ports.carrierOut}
`;
    world = await startWorld({ pjsipConf: carrierPjsipConf({ extra }), globals: { VNUM_TRUNK: 'carrier-out' } });
    const { first: aliceMasked, second: devMasked } = masks(world.order);
    const outcome = await call(world.asterisk, { dialled: devMasked, callerUser: ALICE });
    expectBridged(outcome, { target: DEV, presented: aliceMasked, callerReal: ALICE, calleeReal: DEV });
  }, CALL_TIMEOUT_MS);

  // Each alone: one bad value must be enough. `carrier:x` and `60,5` would
  // pass as `carrier` and `60` if a value ever reached IF() or an argument
  // list unchecked (a dialplan that inlined the settings with IF() was tried,
  // and without a check of the raw values bridged the `carrier:x` call).
  for (const [name, value] of [
    ['VNUM_NUMBER_FORMAT', 'national'],
    ['VNUM_TRUNK', 'carrier&PJSIP/x'],
    ['VNUM_TRUNK', 'carrier:x'],
    ['VNUM_RING_TIMEOUT', '60,5'],
    ['VNUM_CALL_LIMIT', '0'],
    ['VNUM_OTHER_CONTEXT', 'vnum-inbound'],
    ['VNUM_OTHER_CONTEXT', 'office,1'],
  ] as const) {
    it(`a malformed setting refuses every call: ${name}=${value}`, async () => {
      world = await startWorld({ globals: { [name]: value } });
      const { second: devMasked } = masks(world.order);
      const outcome = await call(world.asterisk, { dialled: devMasked, callerUser: ALICE });
      expectRefused(outcome, 503);
    }, CALL_TIMEOUT_MS);
  }
});

e2eSuite('dialplan/pjsip-trunk.sample.conf', () => {
  let world: World | undefined;
  afterAll(async () => stopWorld(world));

  it('loads as shipped (addresses pointed at the test carrier) and carries masked calls both ways', async () => {
    const sample = readFileSync(path.join(repoRoot, 'dialplan/pjsip-trunk.sample.conf'), 'utf8')
      .replace(/^bind = .*$/m, 'bind = 127.0.0.1:5060')
      .replace(/^contact = .*$/m, 'contact = sip:127.0.0.1:5062')
      .replace(/^match = .*$/m, 'match = 127.0.0.1');
    world = await startWorld({ pjsipConf: sample });
    const endpoint = world.asterisk.cli('pjsip show endpoint carrier');
    for (const [option, value] of [
      ['send_pai', 'false'],
      ['send_rpid', 'false'],
      ['trust_id_inbound', 'false'],
      ['trust_id_outbound', 'false'],
      ['send_connected_line', 'no'],
      ['send_diversion', 'false'],
      ['allow_transfer', 'false'],
      ['context', 'vnum-inbound'],
    ]) {
      expect(endpoint).toMatch(new RegExp(`^\\s*${option}\\s*:\\s*${value}\\s*$`, 'm'));
    }
    const { first: aliceMasked, second: devMasked } = masks(world.order);
    const there = await call(
      world.asterisk,
      { dialled: devMasked, callerUser: ALICE, extraHeaders: CALLER_ASSERTS(ALICE) },
      CALLEE_ASSERTS(DEV),
    );
    expectBridged(there, { target: DEV, presented: aliceMasked, callerReal: ALICE, calleeReal: DEV });
    expect(there.invites[0]!.header('P-Asserted-Identity')).toBeUndefined();
    const back = await call(world.asterisk, { dialled: aliceMasked, callerUser: DEV }, CALLEE_ASSERTS(ALICE));
    expectBridged(back, { target: ALICE, presented: devMasked, callerReal: DEV, calleeReal: ALICE });
  }, CALL_TIMEOUT_MS);
});

/**
 * The operator's own context on a trunk that carries more than the pool:
 * it logs what it was handed, lists every channel variable (DumpChan), and
 * dials the DID on through the same trunk, so carrier-out sees the call as
 * the operator's dialplan placed it.
 */
const OFFICE_DIALPLAN = `
[office]
exten => _[+0-9].,1,Log(NOTICE,office: exten=\${EXTEN} cid=\${CALLERID(num)} timeout=\${TIMEOUT(absolute)})
 same => n,DumpChan()
 same => n,Dial(PJSIP/\${EXTEN}@carrier,10)
 same => n,Hangup()
`;

/** What DumpChan printed for the last call: the channel's variables, name=value, one a line. */
function dumpedVariables(logSlice: string): string[] {
  const start = logSlice.lastIndexOf('Variables:');
  expect(start, 'DumpChan ran in the operator context').toBeGreaterThan(-1);
  const block = logSlice.slice(start + 'Variables:'.length);
  const end = block.indexOf('=====');
  return block
    .slice(0, end < 0 ? undefined : end)
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(line));
}

e2eSuite('a trunk that carries more than the pool (VNUM_OTHER_CONTEXT)', () => {
  let world: World | undefined;

  beforeAll(async () => {
    world = await startWorld({
      globals: { VNUM_OTHER_CONTEXT: 'office' },
      operatorDialplan: OFFICE_DIALPLAN,
      extraModules: ['app_dumpchan.so'],
    });
  });
  afterAll(async () => stopWorld(world));
  afterEach(async () => world?.asterisk.waitIdle());

  /** A call to a number that is not in the pool: it must reach the office context exactly as the carrier sent it. */
  async function expectHandedBack(callerUser: string, dialled: string): Promise<void> {
    const w = world!;
    const logBefore = w.asterisk.log().length;
    const outcome = await call(w.asterisk, { dialled, callerUser, callerName: 'Caller Own' });
    const log = w.asterisk.log().slice(logBefore);
    const detail = `caller received:\n${describeMessages(outcome.caller.received)}\ncallee received:\n${describeMessages(outcome.callee)}\n${log.slice(-4000)}`;
    expect(outcome.caller.finalStatus, detail).toBe(200);
    expect(outcome.invites, detail).toHaveLength(1);
    const invite = outcome.invites[0]!;
    // The operator's dialplan dialled the DID as delivered, with the caller's own identity: vnum touched nothing.
    expect(uriUser(invite.requestUri)).toBe(dialled);
    expect(uriUser(invite.header('From'))).toBe(callerUser);
    expect(invite.header('From')).toContain('"Caller Own"');
    expect(log).toContain(`office: exten=${dialled} cid=${callerUser} timeout=`);
    expect(log).not.toMatch(/vnum: .*(refusing|malformed)/);
    // Nothing vnum set on the channel is left for the operator's context.
    // Only what chan_pjsip itself sets on an inbound channel: no VNUM_*, no AGISTATUS, no GOSUB_RETVAL, not even empty.
    expect(dumpedVariables(log)).toEqual(['SIPDOMAIN=127.0.0.1']);
    expect(log).toMatch(/office: exten=\S+ cid=\S+ timeout=0?\s/);
  }

  it('a call to a non-pool DID reaches the operator\'s context untouched: the far end sees the caller\'s own number', async () => {
    await expectHandedBack(ALICE, OFFICE_DID);
    await expectHandedBack(STRANGER, OFFICE_DID.slice(1));
  }, 60_000);

  it('callers with a withheld or invalid caller ID reach it too: not vnum\'s calls', async () => {
    await expectHandedBack('anonymous', OFFICE_DID);
    await expectHandedBack('999', OFFICE_DID);
  }, 60_000);

  it('a call to a pool DID on the same trunk is masked, as before', async () => {
    const w = world!;
    const { first: aliceMasked, second: devMasked } = masks(w.order);
    const outcome = await call(w.asterisk, { dialled: devMasked, callerUser: ALICE, callerName: 'Alice Real' });
    expectBridged(outcome, { target: DEV, presented: aliceMasked, callerReal: ALICE, calleeReal: DEV });
    // A pool DID without a session is still vnum's: refused, never handed to the office.
    expectRefused(await call(w.asterisk, { dialled: devMasked, callerUser: STRANGER }), 404);
  }, 60_000);

  it('a number added to the pool is masked from its next call on, with no dialplan change', async () => {
    const w = world!;
    const did = '+442079460011';
    await expectHandedBack(ALICE, did);
    w.db.poolAdd([did]);
    const r = w.db.run(['session', 'create', 'order-new-did', GRACE_CUSTOMER, DEV, '--second-masked-as', did, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const session = JSON.parse(r.stdout) as SessionJson;
    const outcome = await call(w.asterisk, { dialled: did, callerUser: GRACE_CUSTOMER });
    expectBridged(outcome, { target: DEV, presented: session.parties[0].maskedAs, callerReal: GRACE_CUSTOMER, calleeReal: DEV });
    // And a stranger calling it now is refused by vnum, not handed back.
    expectRefused(await call(w.asterisk, { dialled: did, callerUser: STRANGER }), 404);
  }, 60_000);

  it('the router down: every call on the trunk is refused, the non-pool DID too (vnum cannot tell them apart: fail closed)', async () => {
    const w = world!;
    await w.router.stop();
    try {
      expectRefused(await call(w.asterisk, { dialled: OFFICE_DID, callerUser: ALICE }), 503);
    } finally {
      w.router = await startRouter(w.db);
    }
  }, CALL_TIMEOUT_MS);
});

e2eSuite('the number-type policy on real calls', () => {
  let world: World | undefined;
  /** What DEV dials to reach PREMIUM, and PREMIUM to reach DEV, in a session made while the operator allowed premium rate. */
  let toPremium: string;
  let toDev: string;

  beforeAll(async () => {
    world = await startWorld();
    const r = world.db.run(['session', 'create', 'order-premium', PREMIUM, DEV, '--allowed-number-types', 'default,premium-rate', '--json']);
    expect(r.code, r.stderr).toBe(0);
    ({ first: toPremium, second: toDev } = masks(JSON.parse(r.stdout) as SessionJson));
  });
  afterAll(async () => stopWorld(world));
  afterEach(async () => world?.asterisk.waitIdle());

  /** Refused with cannot-complete-as-dialed and cause 21 (call rejected): 403, and carrier-out receives nothing. */
  async function expectPolicyRefusal(dialled: string, callerUser: string): Promise<void> {
    const outcome = await call(world!.asterisk, { dialled, callerUser });
    expectRefused(outcome, 403);
    expect(findLeaks(outcome.caller.received, [PREMIUM])).toEqual([]);
  }

  it('a session whose target the policy came to refuse: bridged while premium rate was allowed, refused after the router restarts with the default', async () => {
    const w = world!;
    await w.router.stop();
    w.router = await startRouter(w.db, { env: { VNUM_ALLOWED_NUMBER_TYPES: 'default,premium-rate' } });
    const allowed = await call(w.asterisk, { dialled: toPremium, callerUser: DEV });
    expect(allowed.invites).toHaveLength(1);
    expect(uriUser(allowed.invites[0]!.requestUri)).toBe(PREMIUM);
    expect(allowed.caller.finalStatus).toBe(200);

    await w.router.stop();
    w.router = await startRouter(w.db);
    const logBefore = w.asterisk.log().length;
    await expectPolicyRefusal(toPremium, DEV);
    expect(w.asterisk.log().slice(logBefore)).toContain("vnum: the target's number type is not allowed");
    // The router said why, naming the session and the type, never the number.
    const warning = w.router.lines().find((l) => l.includes('number-type policy refuses its target'));
    expect(warning).toBeDefined();
    expect(warning).toContain('order-premium');
    expect(warning).toContain('premium-rate');
    expect(warning).not.toContain(PREMIUM.slice(-7));
    // The premium party calling the agent dials a mobile: not the policy's business.
    const back = await call(w.asterisk, { dialled: toDev, callerUser: PREMIUM });
    expect(back.invites).toHaveLength(1);
    expect(uriUser(back.invites[0]!.requestUri)).toBe(DEV);
  }, 90_000);

  it('a row written before the store kept number types (an older vnum) is judged as well: refused', async () => {
    const w = world!;
    const db = new Database(w.db.file);
    try {
      expect(db.prepare('UPDATE bridge SET target_type = NULL WHERE target = ?').run(PREMIUM).changes).toBe(1);
    } finally {
      db.close();
    }
    await expectPolicyRefusal(toPremium, DEV);
  }, CALL_TIMEOUT_MS);

  it('the dialplan refuses an international-network target even when the router says BRIDGE', async () => {
    const w = world!;
    await w.router.stop();
    const { second: devMasked } = masks(w.order);
    try {
      for (const target of ['+80012345678', '+80812345678', '+870773111632', '+8786123456789', '+881612345678', '+882345678901', '+88321234567', '+88812345678', '+979123456789']) {
        const stub = await startAgiStub(() => ({ kind: 'mset', vars: { VNUM_STATUS: 'BRIDGE', VNUM_TARGET: target, VNUM_CLI: POOL[0]!, VNUM_SESSION: 'x' } }));
        try {
          await expectPolicyRefusal(devMasked, ALICE);
          expect(stub.sessions).toHaveLength(1);
        } finally {
          await stub.close();
        }
      }
      // Control: the same stub with an ordinary target is dialled, so the refusals above are the range check.
      const stub = await startAgiStub(() => ({ kind: 'mset', vars: { VNUM_STATUS: 'BRIDGE', VNUM_TARGET: DEV, VNUM_CLI: POOL[0]!, VNUM_SESSION: 'x' } }));
      try {
        const outcome = await call(w.asterisk, { dialled: devMasked, callerUser: ALICE });
        expect(outcome.invites).toHaveLength(1);
        expect(uriUser(outcome.invites[0]!.requestUri)).toBe(DEV);
      } finally {
        await stub.close();
      }
    } finally {
      w.router = await startRouter(w.db);
    }
  }, 120_000);
});
