/**
 * A cluster node's call log on its way to the authority, without PostgreSQL
 * (src/calls/shipping.ts): SQLite migration 12's sequence (every insert and
 * update of a call takes the next change_seq), shipments in batches of at
 * most `batchSize` oldest change first, the cursor moved only after the
 * sender says the authority committed, a failure counted and the same rows
 * shipped again, a shipper that died between the commit and its cursor
 * shipping them again harmlessly, and a single box's file shipping nothing.
 * test/cluster/calls-authority.test.ts does it against a real PostgreSQL.
 */
import { describe, expect, it } from 'vitest';
import { CallShipper, callsToShip, MAX_EVENTS_TO_SHIP, queueCounterToShip, queueEventToShip, shippingBacklog, shippingPosition, type Shipment, type ShippedCall } from '../../src/calls/shipping.js';
import { callEventsOf } from '../../src/authority/pg-calls.js';
import { RefusalGate } from '../../src/calls/refusals.js';
import { applyCallFact, recordRoutedCall } from '../../src/calls/store.js';
import { createSession } from '../../src/session/sessions.js';
import { captureLog } from '../support/log.js';
import { mobile, party } from '../support/store.js';
import { useStore } from '../support/use-store.js';

const A = mobile(1);
const D = mobile(2);

/** The authority as the upsert treats it: one row per (node, log, call id), replaced only by a later change. */
class FakeAuthority {
  readonly rows = new Map<string, ShippedCall>();
  readonly shipments: Shipment[] = [];
  /** Rows written (not skipped as older), over all shipments. */
  writes = 0;
  failNext = 0;
  send = async (shipment: Shipment): Promise<void> => {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('connect ECONNREFUSED 10.0.0.5:5432');
    }
    this.shipments.push(shipment);
    for (const call of shipment.calls) {
      const key = `${shipment.node}/${shipment.logId}/${call.id}`;
      const had = this.rows.get(key);
      if (had && had.change_seq >= call.change_seq) continue;
      this.rows.set(key, { ...call });
      this.writes++;
    }
  };
}

describe("a node's call log shipped to the authority", () => {
  const store = useStore({ dids: 4 });
  const claim = () =>
    store.db.prepare("INSERT INTO replica_health (id, node, pid, phase, fresh_at, updated_at) VALUES (1, 'pbx_a', 1, 'streaming', 0, 0)").run();

  /** `n` bridged calls, each answered and ended: three changes per call. */
  function calls(n: number, from = 0): void {
    const s = createSession(store.db, { id: `s${from}`, first: party(A), second: party(D), now: 0 }).session;
    for (let i = from; i < from + n; i++) {
      const uniqueid = `1700000000.${i}`;
      expect(recordRoutedCall(store.db, { uniqueid, channel: `PJSIP/c-${i}`, session: s.id, target: A, at: 1_000 + i })).toBe(true);
      applyCallFact(store.db, { kind: 'dial-end', uniqueid, at: 2_000 + i, dialStatus: 'ANSWER' });
      applyCallFact(store.db, { kind: 'hangup', uniqueid, at: 3_000 + i, cause: 16, causeText: 'Normal Clearing' });
    }
  }

  /** The file's call rows as a shipment carries them, by id. */
  const local = (): ShippedCall[] => {
    const shippedSeq = shippingPosition(store.db)!.shippedSeq;
    store.db.prepare('UPDATE call_shipping SET shipped_seq = 0').run();
    try {
      return callsToShip(store.db, 1_000_000).calls.sort((a, b) => a.id - b.id);
    } finally {
      store.db.prepare('UPDATE call_shipping SET shipped_seq = ?').run(shippedSeq);
    }
  };

  it('every insert and update of a call takes the next change_seq; the backlog is what has not shipped', () => {
    calls(2);
    const rows = store.db.prepare<[], { id: number; change_seq: number }>('SELECT id, change_seq FROM call ORDER BY id').all();
    // Call 1: inserted (1), answered (2), ended (3); call 2: 4, 5, 6.
    expect(rows).toEqual([{ id: 1, change_seq: 3 }, { id: 2, change_seq: 6 }]);
    expect(shippingPosition(store.db)).toMatchObject({ lastSeq: 6, shippedSeq: 0, shippedAt: null });
    expect(shippingPosition(store.db)!.logId).toMatch(/^[0-9a-f]{16}$/);
    expect(shippingBacklog(store.db)).toBe(6);
  });

  it('ships in batches of at most batchSize, oldest change first, moving the cursor after each commit, until nothing is left', async () => {
    claim();
    calls(1_200);
    const authority = new FakeAuthority();
    const log = captureLog();
    const shipper = new CallShipper({ dbPath: store.path, send: authority.send, logger: log.logger, batchSize: 500 });
    const steps: string[] = [];
    for (let i = 0; i < 5; i++) steps.push(await shipper.shipOnce());
    await shipper.stop();
    // The router reports nothing here (no router_status row), so an empty step is idle.
    expect(steps).toEqual(['shipped', 'shipped', 'shipped', 'idle', 'idle']);
    expect(authority.shipments.map((s) => s.calls.length)).toEqual([500, 500, 200]);
    expect(authority.shipments.map((s) => s.toSeq)).toEqual([authority.shipments[0]!.calls.at(-1)!.change_seq, authority.shipments[1]!.calls.at(-1)!.change_seq, 3_600]);
    expect(authority.shipments.map((s) => s.backlogAfter)).toEqual([3_600 - authority.shipments[0]!.toSeq, 3_600 - authority.shipments[1]!.toSeq, 0]);
    for (const s of authority.shipments) {
      const seqs = s.calls.map((c) => c.change_seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(s.node).toBe('pbx_a');
    }
    expect(shippingPosition(store.db)).toMatchObject({ lastSeq: 3_600, shippedSeq: 3_600 });
    expect(shippingBacklog(store.db)).toBe(0);
    expect(shipper.counts).toEqual({ shipped: 1_200, failures: 0 });
    expect([...authority.rows.values()].sort((a, b) => a.id - b.id)).toEqual(local());
  });

  it('a change after shipping ships again (the row, with its new state); a failure keeps the cursor, is counted, and the same rows ship next time', async () => {
    claim();
    calls(3);
    const authority = new FakeAuthority();
    const shipper = new CallShipper({ dbPath: store.path, send: authority.send, logger: captureLog().logger, batchSize: 500 });
    expect(await shipper.shipOnce()).toBe('shipped');
    store.db.prepare('UPDATE call SET recording_bytes = 42 WHERE id = 2').run();
    expect(shippingBacklog(store.db)).toBe(1);
    authority.failNext = 2;
    expect(await shipper.shipOnce()).toBe('failed');
    expect(await shipper.shipOnce()).toBe('failed');
    expect(shipper.counts.failures).toBe(2);
    expect(shippingPosition(store.db)!.shippedSeq).toBe(9);
    expect(await shipper.shipOnce()).toBe('shipped');
    expect(authority.shipments.at(-1)!.calls.map((c) => [c.id, c.recording_bytes, c.change_seq])).toEqual([[2, 42, 10]]);
    expect(shippingPosition(store.db)!.shippedSeq).toBe(10);
    expect([...authority.rows.values()].sort((a, b) => a.id - b.id)).toEqual(local());
    await shipper.stop();
  });

  it('a cursor the file will not take (another writer holds it) is a failure: counted, backed off, the same rows shipped again once it can', async () => {
    claim();
    calls(2);
    const authority = new FakeAuthority();
    const { logger, lines } = captureLog();
    const shipper = new CallShipper({ dbPath: store.path, send: authority.send, logger, busyTimeoutMs: 20 });
    // Another writer (vnum replica applying a long transaction) holds the file's write lock across the shipment.
    store.db.prepare('BEGIN IMMEDIATE').run();
    try {
      expect(await shipper.shipOnce()).toBe('failed');
    } finally {
      store.db.prepare('COMMIT').run();
    }
    expect(shipper.counts.failures).toBe(1);
    expect(shippingPosition(store.db)!.shippedSeq).toBe(0);
    expect(lines.some((l) => /call log not shipped to the authority/.test(l))).toBe(true);
    await new Promise((r) => setTimeout(r, 1_100)); // the handle it dropped opens again after reopenDelayMs
    expect(await shipper.shipOnce()).toBe('shipped');
    expect(shippingPosition(store.db)!.shippedSeq).toBe(6);
    expect(authority.writes).toBe(2);
    await shipper.stop();
  });

  it('a shipper that died after the commit and before its cursor moved ships the same rows again: nothing doubled, nothing moved back', async () => {
    claim();
    calls(4);
    const authority = new FakeAuthority();
    // The first shipper's cursor write never happens (killed between the COMMIT and the file).
    const dying = new CallShipper({ dbPath: store.path, send: async (s) => { await authority.send(s); throw new Error('killed before the COMMIT was heard'); }, logger: captureLog().logger });
    expect(await dying.shipOnce()).toBe('failed');
    await dying.stop();
    expect(authority.rows.size).toBe(4);
    expect(shippingPosition(store.db)!.shippedSeq).toBe(0);
    // Meanwhile a call changed (a newer state than the authority's) and a new one came.
    store.db.prepare('UPDATE call SET recording_bytes = 7 WHERE id = 1').run();
    calls(1, 100);
    const restarted = new CallShipper({ dbPath: store.path, send: authority.send, logger: captureLog().logger });
    expect(await restarted.shipOnce()).toBe('shipped');
    await restarted.stop();
    expect(authority.rows.size).toBe(5);
    // Shipped twice, written once each (4 + the re-shipped changed row 1 + the new call): no row went back.
    expect(authority.writes).toBe(4 + 2);
    expect([...authority.rows.values()].sort((a, b) => a.id - b.id)).toEqual(local());
    expect(shippingBacklog(store.db)).toBe(0);
  });

  it("a single box's file (no node named by vnum replica) ships nothing, and says so once", async () => {
    calls(2);
    const authority = new FakeAuthority();
    const log = captureLog();
    const shipper = new CallShipper({ dbPath: store.path, send: authority.send, logger: log.logger });
    expect(await shipper.shipOnce()).toBe('not-a-replica');
    expect(await shipper.shipOnce()).toBe('not-a-replica');
    await shipper.stop();
    expect(authority.shipments).toEqual([]);
    expect(shipper.backlog).toBeNull();
    expect(shippingBacklog(store.db)).toBe(6);
    expect(log.records().filter((r) => String(r.msg).startsWith('call log not shipped')).length).toBe(1);
  });

  it('queued events (call.refused) and counter deltas ship with the calls and leave the node once the authority has them; the queue is bounded', async () => {
    claim();
    const event = (i: number) => ({ type: 'call.refused' as const, session: 's0', occurredAt: i, data: { call: { uniqueid: null, caller: 'first', dialled: '+1', reason: 'session-ended' } } as never });
    store.db.transaction(() => {
      for (let i = 0; i < 3; i++) expect(queueEventToShip(store.db, event(i))).toBe(true);
      queueCounterToShip(store.db, 'refused_no_session', 4, 9);
    })();
    const authority = new FakeAuthority();
    const shipper = new CallShipper({ dbPath: store.path, send: authority.send, logger: captureLog().logger, batchSize: 2 });
    expect(await shipper.shipOnce()).toBe('shipped');
    expect(await shipper.shipOnce()).toBe('shipped');
    expect(await shipper.shipOnce()).toBe('idle');
    await shipper.stop();
    expect(authority.shipments.map((s) => s.events.map((e) => e.type))).toEqual([['call.refused', 'call.refused'], ['call.refused', 'counter']]);
    expect(JSON.parse(authority.shipments[1]!.events[1]!.data)).toEqual({ name: 'refused_no_session', by: 4 });
    expect(store.db.prepare('SELECT count(*) FROM event_to_ship').pluck().get()).toBe(0);
    // Full (nobody ships: the authority down, or no --authority): nothing more is queued, not an event and not a
    // counter's delta; the caller keeps counting in memory (./refusals.ts) until the shipper makes room.
    store.db.transaction(() => {
      for (let i = 0; i < MAX_EVENTS_TO_SHIP - 1; i++) expect(queueEventToShip(store.db, event(i))).toBe(true);
      expect(queueCounterToShip(store.db, 'refused_no_session', 2, 10)).toBe(true);
      expect(queueEventToShip(store.db, event(0))).toBe(false);
      expect(queueCounterToShip(store.db, 'refusals_dropped', 1, 11)).toBe(false);
    })();
    expect(store.db.prepare('SELECT count(*) FROM event_to_ship').pluck().get()).toBe(MAX_EVENTS_TO_SHIP);
    // Room again once a shipment has taken the oldest.
    const drain = new CallShipper({ dbPath: store.path, send: authority.send, logger: captureLog().logger, batchSize: 500 });
    expect(await drain.shipOnce()).toBe('shipped');
    await drain.stop();
    expect(queueEventToShip(store.db, event(1))).toBe(true);
  });

  it('the router counts a refusal its full queue would not take as refusals_dropped, and keeps counter deltas the queue would not take for the next report', () => {
    const gate = new RefusalGate({ defaultCountry: 'GB' }, 0);
    gate.dropped();
    gate.giveBack(new Map([['refused_no_session', 3], ['refusals_dropped', 2]]));
    expect(gate.takeCounts()).toEqual(new Map([['refusals_dropped', 3], ['refused_no_session', 3]]));
    expect(gate.takeCounts()).toEqual(new Map());
  });

  it("a shipped change's webhook events are judged against the authority's row before it: each fact once", () => {
    const call = (over: Partial<ShippedCall>): ShippedCall =>
      ({ id: 1, change_seq: 1, started_at: 10, answered_at: null, ended_at: null, lost_at: null, ...over }) as ShippedCall;
    const none = { answered_at: null, ended_at: null, lost_at: null };
    const types = (c: ShippedCall, before: Parameters<typeof callEventsOf>[1]) => callEventsOf(c, before).map((e) => `${e.type}@${e.occurredAt}`);
    expect(types(call({}), null)).toEqual(['call.bridged@10']);
    // First shipped already over: all three, once.
    expect(types(call({ answered_at: 20, ended_at: 30 }), null)).toEqual(['call.bridged@10', 'call.answered@20', 'call.ended@30']);
    expect(types(call({ answered_at: 20 }), none)).toEqual(['call.answered@20']);
    expect(types(call({ answered_at: 20, ended_at: 30 }), { ...none, answered_at: 20 })).toEqual(['call.ended@30']);
    // Nothing new: nothing (a recording measured, say).
    expect(types(call({ answered_at: 20, ended_at: 30 }), { answered_at: 20, ended_at: 30, lost_at: null })).toEqual([]);
    // Lost, then its exact end: one call.ended, as on a single box.
    expect(types(call({ lost_at: 40 }), none)).toEqual(['call.ended@40']);
    expect(types(call({ ended_at: 35 }), { ...none, lost_at: 40 })).toEqual([]);
  });

  it("ships each router's report when it changed, and not again while it has not", async () => {
    claim();
    const report = (updatedAt: number) =>
      store.db
        .prepare("INSERT OR REPLACE INTO router_status (router, pid, started_at, updated_at, ami_state) VALUES ('127.0.0.1:4573', 9, ?, ?, 'logged-in')")
        .run(updatedAt - 1, updatedAt);
    const now = Date.now();
    report(now);
    const authority = new FakeAuthority();
    const shipper = new CallShipper({ dbPath: store.path, send: authority.send, logger: captureLog().logger, now: () => now });
    expect(await shipper.shipOnce()).toBe('shipped');
    expect(await shipper.shipOnce()).toBe('idle');
    report(now + 5_000);
    expect(await shipper.shipOnce()).toBe('shipped');
    // The router's last report (its stop) is shipped by the shipper's stop.
    report(now + 6_000);
    await shipper.stop();
    expect(authority.shipments.map((s) => s.routers.map((r) => [r.router, r.updatedAt]))).toEqual([
      [['127.0.0.1:4573', now]],
      [['127.0.0.1:4573', now + 5_000]],
      [['127.0.0.1:4573', now + 6_000]],
    ]);
  });
});
