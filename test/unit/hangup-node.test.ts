/**
 * Release with hang-up on a cluster node: the authority writes the request's
 * time on the session's row (session.hangup_requested_at), replication brings
 * it into the node's file, and the node's `vnum serve` hangs up its own open
 * calls of that session that started at or before it (callsToHangUp), once,
 * through AMI. Here the replica's apply is stood in for by the same UPDATE on
 * the file (test/cluster/hangup.test.ts drives the real replication); the
 * AMI side is the fake manager (test/support/fake-ami.ts), which sends the
 * channel's Hangup event when it hangs one up, as Asterisk does.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { callsToHangUp, listCalls, recordRoutedCall } from '../../src/calls/store.js';
import { CallTracker } from '../../src/calls/tracker.js';
import type { RouteAnswer } from '../../src/routing/answer.js';
import { createSession, releaseSession } from '../../src/session/sessions.js';
import type { FakeAmi } from '../support/fake-ami.js';
import { londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';
import { trackerOnFakeAmi } from '../support/tracker.js';
import { sleep, until } from '../support/wait.js';

let store: ReturnType<typeof tempDb>;
const T0 = 1_795_600_000_000;
const A = mobile(1);
const D = mobile(2);
const B = mobile(3);
const E = mobile(4);

beforeEach(() => {
  store = tempDb();
  seedPool(store.db, londonDids(4));
  createSession(store.db, { id: 'order-1', first: party(A), second: party(D), now: T0 });
  createSession(store.db, { id: 'order-2', first: party(B), second: party(E), now: T0 });
});
afterEach(() => store.cleanup());

/** What the replica applies when the authority's release with hangup commits (src/authority/postgres.ts). */
function requestOnSession(id: string, at: number): void {
  store.db.prepare('UPDATE session SET hangup_requested_at = ? WHERE id = ?').run(at, id);
}

function routed(uniqueid: string, session: string, target: string, at: number): void {
  if (!recordRoutedCall(store.db, { uniqueid, channel: `PJSIP/carrier-${uniqueid}`, session, target, at })) throw new Error('not recorded');
}

const calls = () => Object.fromEntries(listCalls(store.db, { limit: 50 }).calls.map((c) => [c.uniqueid, c]));

describe('the node-side rule (callsToHangUp on a replica file)', () => {
  it("a session's request covers its open calls that started at or before it: not later ones, not other sessions', not ended ones", () => {
    routed('1.1', 'order-1', D, T0 + 10);
    routed('1.2', 'order-1', A, T0 + 20); // started exactly at the request: in progress at it
    routed('1.3', 'order-1', D, T0 + 5);
    store.db.prepare("UPDATE call SET ended_at = ? WHERE uniqueid = '1.3'").run(T0 + 8);
    routed('2.1', 'order-2', E, T0 + 10);
    // No request yet, nothing ended: nothing to hang up.
    expect(callsToHangUp(store.db, T0 + 20)).toEqual([]);

    requestOnSession('order-1', T0 + 20);
    routed('1.4', 'order-1', D, T0 + 21); // after the request, in the release's grace
    const due = callsToHangUp(store.db, T0 + 30);
    expect(due.map((d) => [d.uniqueid, d.session, d.reason]).sort()).toEqual([
      ['1.1', 'order-1', 'release'],
      ['1.2', 'order-1', 'release'],
    ]);
    // Recorded on the call as a single box's release would: 'release', at the request's time (not the node's now).
    expect(calls()['1.1']).toMatchObject({ hangupReason: 'release', hangupRequestedAt: T0 + 20 });
    expect(calls()['1.4']).toMatchObject({ hangupReason: null, hangupRequestedAt: null });
    expect(calls()['2.1']).toMatchObject({ hangupReason: null, hangupRequestedAt: null });
    expect(calls()['1.3']).toMatchObject({ hangupReason: null, hangupRequestedAt: null });

    // Still open at the next check: due again (the tracker's retry decides whether to send), marked once.
    expect(callsToHangUp(store.db, T0 + 40).map((d) => d.uniqueid).sort()).toEqual(['1.1', '1.2']);
    expect(calls()['1.1']!.hangupRequestedAt).toBe(T0 + 20);
  });

  it('a later request (a second release with hangup) covers the calls started since; the calls of the first keep their mark', () => {
    routed('1.1', 'order-1', D, T0 + 10);
    requestOnSession('order-1', T0 + 20);
    expect(callsToHangUp(store.db, T0 + 25).map((d) => d.uniqueid)).toEqual(['1.1']);
    routed('1.2', 'order-1', D, T0 + 30);
    requestOnSession('order-1', T0 + 40);
    expect(callsToHangUp(store.db, T0 + 45).map((d) => d.uniqueid).sort()).toEqual(['1.1', '1.2']);
    expect(calls()['1.1']!.hangupRequestedAt).toBe(T0 + 20);
    expect(calls()['1.2']).toMatchObject({ hangupReason: 'release', hangupRequestedAt: T0 + 40 });
  });

  it('a release without hangup hangs up nothing before the session ends; then its calls, as session-ended', () => {
    routed('1.1', 'order-1', D, T0 + 10);
    releaseSession(store.db, 'order-1', 60_000, T0 + 20);
    expect(callsToHangUp(store.db, T0 + 30)).toEqual([]);
    expect(callsToHangUp(store.db, T0 + 20 + 60_000)).toMatchObject([{ uniqueid: '1.1', reason: 'session-ended' }]);
  });

  it("a call started during the grace of a release with hangup is hung up when the session ends, as on a single box", () => {
    releaseSession(store.db, 'order-1', 60_000, T0 + 20);
    requestOnSession('order-1', T0 + 20);
    routed('1.5', 'order-1', D, T0 + 30);
    expect(callsToHangUp(store.db, T0 + 40)).toEqual([]);
    expect(callsToHangUp(store.db, T0 + 20 + 60_000)).toMatchObject([{ uniqueid: '1.5', reason: 'session-ended' }]);
  });
});

describe("a node's vnum serve (the call tracker) against a fake AMI", () => {
  const stops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  async function node() {
    // A short retry: a second Hangup for a call already hung up would show within the test.
    const side = await trackerOnFakeAmi(store.path, { fake: { hangupEvents: true }, tracker: { hangupRetryMs: 100 } });
    stops.push(side.stop);
    return side;
  }

  const answer = (session: string, target: string): RouteAnswer => ({ status: 'BRIDGE', target, presentedCallerId: '+442079460002', session });
  /** A call the router bridged, with its channel up in the fake Asterisk (the tracker hangs up by Uniqueid). */
  function bridged(fake: FakeAmi, tracker: CallTracker, uniqueId: string, session: string, target: string): void {
    fake.channels.push({ channel: uniqueId, uniqueid: uniqueId, state: 'Up' });
    tracker.routed({ uniqueId, channel: `PJSIP/carrier-${uniqueId.replace('.', '')}`, callerId: A }, answer(session, target));
  }
  const hungUp = (fake: FakeAmi) => fake.actions('hangup').map((a) => a.get('Channel'));

  it("hangs up, once, by Uniqueid, the open calls of the requested session that were in progress at the request; not another session's, not a later call", async () => {
    const { fake, tracker } = await node();
    bridged(fake, tracker, '31.1', 'order-1', D);
    bridged(fake, tracker, '31.2', 'order-1', A);
    bridged(fake, tracker, '32.1', 'order-2', E);
    await until(() => Object.keys(calls()).length === 3);
    await sleep(5);
    requestOnSession('order-1', Date.now());
    await sleep(5);
    bridged(fake, tracker, '31.3', 'order-1', D); // after the request
    await until(() => Object.keys(calls()).length === 4);

    await until(() => calls()['31.1']?.state === 'ended' && calls()['31.2']?.state === 'ended', 3_000);
    // Several checks and retry periods later: one Hangup each, nothing for the others.
    await sleep(400);
    expect(hungUp(fake).sort()).toEqual(['31.1', '31.2']);
    expect(fake.actions('hangup').every((a) => a.get('Cause') === '16')).toBe(true);
    expect(calls()['31.1']).toMatchObject({ state: 'ended', hangupReason: 'release' });
    expect(calls()['31.3']).toMatchObject({ state: 'routed', hangupReason: null });
    expect(calls()['32.1']).toMatchObject({ state: 'routed', hangupReason: null });
    expect(fake.channels.map((c) => c.uniqueid).sort()).toEqual(['31.3', '32.1']);
  });

  it('a request that arrives late (a node that was cut off) hangs up the calls still up that it covers', async () => {
    const { fake, tracker } = await node();
    bridged(fake, tracker, '41.1', 'order-1', D);
    bridged(fake, tracker, '41.2', 'order-1', D);
    await until(() => Object.keys(calls()).length === 2);
    const askedAt = Date.now();
    await sleep(5);
    // 41.2 ended on its own before the request reached this node.
    fake.channels = fake.channels.filter((c) => c.uniqueid !== '41.2');
    fake.event('Hangup', 'call', [['Uniqueid', '41.2'], ['Cause', '16']]);
    await until(() => calls()['41.2']?.state === 'ended');
    await sleep(200);
    expect(hungUp(fake)).toEqual([]);
    // The replica catches up: the authority's row, with the time of the release made during the cut.
    requestOnSession('order-1', askedAt);
    await until(() => calls()['41.1']?.state === 'ended', 3_000);
    await sleep(300);
    expect(hungUp(fake)).toEqual(['41.1']);
    expect(calls()['41.1']).toMatchObject({ hangupReason: 'release', hangupRequestedAt: askedAt });
  });
});
