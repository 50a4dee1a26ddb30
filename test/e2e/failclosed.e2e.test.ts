/**
 * End to end: real SIP calls through a real Asterisk 22
 * (dialplan/vnum.conf unchanged) routed by the built `vnum serve`, whose
 * stderr is captured for the whole run.
 *
 * - The database becomes unusable under a running router (its path turns
 *   into a directory; its file is corrupted in place): the caller gets the
 *   announcement and a final error, carrier-out receives no INVITE; once the
 *   cause is gone the next call bridges, with no restart.
 * - Another process holds BEGIN EXCLUSIVE: calls still bridge (a WAL reader
 *   is not blocked by a writer), and a release made under the lock lands
 *   after it.
 * - At the default log level, no line the router wrote during the whole run
 *   holds any party's real number.
 *
 * The router stopped, and the router that accepts and never answers, are in
 * routing.e2e.test.ts ("6. the router failing").
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { Asterisk } from '../support/asterisk/asterisk.js';
import { VnumDb, type SessionJson } from '../support/cli.js';
import { findLeaks, numberPattern } from '../support/leaks.js';
import { startServe, type Serve } from '../support/serve.js';
import { holdLock } from '../support/store.js';
import { describeMessages, uriUser } from '../support/sip/messages.js';
import { callThrough, type CallOutcome, type UacCall } from '../support/sip/sipp.js';
import { e2eSuite } from '../support/suite.js';

const POOL = Array.from({ length: 4 }, (_, i) => `+4420794600${String(i + 1).padStart(2, '0')}`);
const ALICE = '+441134960123';
const DEV = '+441614960456';
const ZOE = '+441174960789';
const GRACE = '+441184960555';
const STRANGER = '+441314960999';
const REAL = [ALICE, DEV, ZOE, GRACE, STRANGER];
const CALL_TIMEOUT_MS = 40_000;

e2eSuite('fail-closed and private end to end (Asterisk 22, vnum serve, sipp)', () => {
  let asterisk: Asterisk;
  let db: VnumDb;
  let router: Serve;
  let order: SessionJson;
  let done: SessionJson;
  let holder: ChildProcess | undefined;

  beforeAll(async () => {
    db = new VnumDb({ VNUM_DEFAULT_COUNTRY: 'GB' });
    db.poolAdd(POOL);
    order = db.createSession('order-alice', ALICE, DEV);
    done = db.createSession('order-done', ZOE, GRACE);
    db.release('order-done', '0s');
    // The router on a port of its own; the dialplan is pointed at it.
    router = await startServe({ db: db.file });
    asterisk = await Asterisk.start({ globals: { VNUM_AGI_URL: `agi://127.0.0.1:${router.port}/route` } });
  });
  afterAll(async () => {
    holder?.kill('SIGKILL');
    await router?.stop();
    await asterisk?.stop();
    db?.remove();
  });
  afterEach(async () => asterisk?.waitIdle());

  const call = (uac: UacCall): Promise<CallOutcome> => callThrough(asterisk, uac);

  function expectBridged(outcome: CallOutcome, target: string, presented: string): void {
    const detail = `caller received:\n${describeMessages(outcome.caller.received)}\nrouter:\n${router.lines().slice(-5).join('\n')}`;
    expect(outcome.invites, detail).toHaveLength(1);
    expect(uriUser(outcome.invites[0]!.requestUri)).toBe(target);
    expect(uriUser(outcome.invites[0]!.header('From'))).toBe(presented);
    expect(outcome.caller.finalStatus, detail).toBe(200);
  }

  function expectRefused(outcome: CallOutcome): void {
    const detail = `caller received:\n${describeMessages(outcome.caller.received)}\ncallee received:\n${describeMessages(outcome.callee)}`;
    // Nothing reached carrier-out: no INVITE, no message at all.
    expect(outcome.callee, detail).toEqual([]);
    // The announcement as early media, never an answer, then a final error.
    const progress = outcome.caller.received.find((m) => m.status === 183);
    expect(progress, detail).toBeDefined();
    expect(progress!.body).toMatch(/^m=audio \d+ RTP\/AVP/m);
    expect(outcome.caller.received.some((m) => m.status === 200 && m.cseqMethod === 'INVITE'), detail).toBe(false);
    expect(outcome.caller.finalStatus, detail).toBe(503);
    expect(findLeaks(outcome.caller.received, REAL.filter((n) => n !== ALICE), [])).toEqual([]);
  }

  const aliceCallsDev = (): Promise<CallOutcome> => call({ dialled: order.parties[1].maskedAs, callerUser: ALICE });

  it('control: A calls D\'s masked number and D rings, presented with A\'s masked number', async () => {
    expectBridged(await aliceCallsDev(), DEV, order.parties[0].maskedAs);
  }, CALL_TIMEOUT_MS);

  it('the database path becomes a directory: the caller hears the refusal, no INVITE goes out; the file back, the next call bridges', async () => {
    for (const suffix of ['', '-wal', '-shm']) renameSync(db.file + suffix, `${db.file}.moved${suffix}`);
    mkdirSync(db.file);
    try {
      expectRefused(await aliceCallsDev());
      expect(router.lines().some((l) => l.includes('store failed'))).toBe(true);
    } finally {
      rmdirSync(db.file);
      for (const suffix of ['', '-wal', '-shm']) renameSync(`${db.file}.moved${suffix}`, db.file + suffix);
    }
    // The router waits 1 s between attempts to reopen; an announcement alone lasts longer.
    await new Promise((r) => setTimeout(r, 1_100));
    expectBridged(await aliceCallsDev(), DEV, order.parties[0].maskedAs);
  }, 2 * CALL_TIMEOUT_MS);

  it('the database is corrupted in place: refused, no INVITE; the bytes restored, the next call bridges', async () => {
    const checkpointer = new Database(db.file);
    checkpointer.pragma('wal_checkpoint(TRUNCATE)');
    checkpointer.close();
    const good = readFileSync(db.file);
    writeFileSync(db.file, Buffer.concat([good.subarray(0, 4096), randomBytes(good.length - 4096)]));
    try {
      expectRefused(await aliceCallsDev());
    } finally {
      writeFileSync(db.file, good);
    }
    await new Promise((r) => setTimeout(r, 1_100));
    expectBridged(await aliceCallsDev(), DEV, order.parties[0].maskedAs);
  }, 2 * CALL_TIMEOUT_MS);

  it('another process holds BEGIN EXCLUSIVE: calls still bridge (a WAL reader is not blocked by a writer)', async () => {
    const lock = await holdLock(db.file, 'BEGIN EXCLUSIVE', 5_000);
    holder = lock.child;
    expectBridged(await aliceCallsDev(), DEV, order.parties[0].maskedAs);
    // The lock was still held for the whole call.
    expect(holder.exitCode).toBeNull();
    await lock.exited;
    holder = undefined;
  }, CALL_TIMEOUT_MS);

  it('D calls A, a stranger calls, a hostile caller ID, a call for an ended session: each as the dialplan says', async () => {
    expectBridged(await call({ dialled: order.parties[0].maskedAs, callerUser: DEV }), ALICE, order.parties[1].maskedAs);
    const stranger = await call({ dialled: order.parties[1].maskedAs, callerUser: STRANGER });
    expect(stranger.invites).toEqual([]);
    const hostile = await call({ dialled: order.parties[1].maskedAs, callerUser: `${ALICE}&PJSIP/${DEV}%40carrier` });
    expect(hostile.invites).toEqual([]);
    expect(hostile.caller.finalStatus).toBe(484);
    // Zoe dials Grace's masked number: their session has ended.
    const ended = await call({ dialled: done.parties[1].maskedAs, callerUser: ZOE });
    expect(ended.invites).toEqual([]);
    expect(router.lines().some((l) => l.includes('invalid call'))).toBe(true);
  }, 4 * CALL_TIMEOUT_MS);

  it('no line the router logged in this whole run holds a real number (default log level)', () => {
    const lines = router.lines();
    expect(lines.length).toBeGreaterThan(3);
    expect(lines.some((l) => l.includes('store failed'))).toBe(true);
    const leaking = lines.filter((line) => REAL.some((n) => numberPattern(n).test(line)));
    expect(leaking).toEqual([]);
    console.log(`privacy: ${lines.length} router log lines over the e2e run, none with a real number`);
  });
});
