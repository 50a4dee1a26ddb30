/**
 * The call log: AMI facts into rows (src/calls/facts.ts, store.ts), and the
 * part of `vnum serve` that owns it (tracker.ts) against a fake AMI on a real
 * socket: routed calls recorded, events applied, calls that ended unseen
 * marked lost after a login, calls hung up when asked or when their session
 * ends, the status `vnum health` reads.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RouteAnswer } from '../../src/routing/answer.js';
import { amiSettings } from '../../src/cli/ami-settings.js';
import { secretFileModeProblem } from '../../src/cli/secret-file.js';
import { AmiClient, type AmiEvent } from '../../src/ami/client.js';
import { CALL_EVENT_CLASSES, CALL_EVENTS, callFact, liveUniqueids } from '../../src/calls/facts.js';
import {
  applyCallFact,
  callsToHangUp,
  listCalls,
  markLostCalls,
  openCallCount,
  readRouterStatus,
  recordRoutedCall,
  requestSessionHangup,
} from '../../src/calls/store.js';
import { CallTracker } from '../../src/calls/tracker.js';
import { parseSince } from '../../src/time.js';
import { ErrorCode, VnumError } from '../../src/errors.js';
import { createSession, releaseSession } from '../../src/session/sessions.js';
import { openDb } from '../../src/store/db.js';
import { captureLog } from '../support/log.js';
import { sleep, until } from '../support/wait.js';
import { FakeAmi } from '../support/fake-ami.js';
import { trackerOnFakeAmi } from '../support/tracker.js';
import { holdLock, londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';

let store: ReturnType<typeof tempDb>;
const A = mobile(1);
const D = mobile(2);
const T0 = 1_795_600_000_000;

beforeEach(() => {
  store = tempDb();
  seedPool(store.db, londonDids(4));
  createSession(store.db, { id: 'order-1', first: party(A), second: party(D), now: T0 });
});
afterEach(() => store.cleanup());

function event(name: string, fields: Record<string, string>, at = T0): AmiEvent {
  return { name, fields: { event: name, ...fields }, at, timestamped: true };
}

function apply(name: string, fields: Record<string, string>, at: number): boolean {
  const fact = callFact(event(name, fields, at));
  if (!fact) throw new Error(`no fact from ${name}`);
  return applyCallFact(store.db, fact);
}

describe('AMI events into facts', () => {
  it('reads DialBegin, DialEnd and Hangup, and nothing else', () => {
    expect(callFact(event('DialBegin', { uniqueid: '1.0', destuniqueid: '1.1' }))).toEqual({ kind: 'dial-begin', uniqueid: '1.0', at: T0, calleeUniqueid: '1.1' });
    expect(callFact(event('DialEnd', { uniqueid: '1.0', dialstatus: 'ANSWER' }))).toMatchObject({ kind: 'dial-end', dialStatus: 'ANSWER' });
    expect(callFact(event('Hangup', { uniqueid: '1.0', cause: '17', 'cause-txt': 'User busy' }))).toMatchObject({ cause: 17, causeText: 'User busy' });
    expect(callFact(event('Newchannel', { uniqueid: '1.0', calleridnum: A }))).toBeUndefined();
    expect(CALL_EVENTS).toEqual(['DialBegin', 'DialEnd', 'Hangup']);
    expect(CALL_EVENT_CLASSES).toEqual(['call']);
  });

  it('ignores values that are not Asterisk\'s: they are never stored', () => {
    expect(callFact(event('Hangup', { uniqueid: '1.0\r\nx' }))).toBeUndefined();
    expect(callFact(event('Hangup', { uniqueid: `'; DROP TABLE call; --` }))).toBeUndefined();
    expect(callFact(event('DialEnd', { uniqueid: '1.0', dialstatus: 'answer' }))).toBeUndefined();
    expect(callFact(event('Hangup', { uniqueid: '1.0', cause: 'x', 'cause-txt': `${A} <script>` }))).toMatchObject({ cause: null, causeText: null });
    expect(callFact(event('DialBegin', { uniqueid: '1.0', destuniqueid: 'a b' }))).toMatchObject({ calleeUniqueid: null });
    expect(liveUniqueids([{ fields: { uniqueid: '1.0' } }, { fields: { uniqueid: 'bad id' } }, { fields: {} }])).toEqual(new Set(['1.0']));
  });
});

describe('the call log', () => {
  const routed = (uniqueid: string, target = D, at = T0) =>
    recordRoutedCall(store.db, { uniqueid, channel: `PJSIP/carrier-${uniqueid}`, session: 'order-1', target, at });

  it('a call from routing to the end: states, times, duration, outcome; no real number stored', () => {
    expect(routed('100.1')).toBe(true);
    expect(listCalls(store.db, { limit: 10 }).calls[0]).toMatchObject({ state: 'routed', caller: 'first', session: 'order-1', startedAt: T0 });
    expect(apply('DialBegin', { uniqueid: '100.1', destuniqueid: '100.2' }, T0 + 20)).toBe(true);
    expect(listCalls(store.db, { limit: 10 }).calls[0]!.state).toBe('ringing');
    apply('DialEnd', { uniqueid: '100.1', dialstatus: 'ANSWER' }, T0 + 2_000);
    expect(listCalls(store.db, { limit: 10, live: true }).calls[0]!.state).toBe('answered');
    apply('Hangup', { uniqueid: '100.2', cause: '16' }, T0 + 9_000); // the callee's leg: not a row of its own
    apply('Hangup', { uniqueid: '100.1', cause: '16', 'cause-txt': 'Normal Clearing' }, T0 + 9_500);
    const [call] = listCalls(store.db, { limit: 10 }).calls;
    expect(call).toMatchObject({
      state: 'ended',
      ringingAt: T0 + 20,
      answeredAt: T0 + 2_000,
      endedAt: T0 + 9_500,
      durationMs: 7_500,
      dialStatus: 'ANSWER',
      hangupCause: 16,
      hangupCauseText: 'Normal Clearing',
    });
    expect(listCalls(store.db, { limit: 10, live: true }).calls).toEqual([]);
    const everything = JSON.stringify(store.db.prepare('SELECT * FROM call').all());
    expect(everything).not.toContain(A.slice(-9));
    expect(everything).not.toContain(D.slice(-9));
  });

  it('the caller is the party the router does not dial', () => {
    routed('1.1', D);
    routed('1.2', A);
    expect(listCalls(store.db, { limit: 10 }).calls.map((c) => c.caller)).toEqual(['second', 'first']);
  });

  it('a routed call for a session without that party, or no such session, is not recorded', () => {
    expect(routed('1.1', mobile(9))).toBe(false);
    expect(recordRoutedCall(store.db, { uniqueid: '1.2', channel: 'PJSIP/x', session: 'nope', target: D, at: T0 })).toBe(false);
    expect(listCalls(store.db, { limit: 10 }).calls).toEqual([]);
  });

  it('events for calls vnum did not bridge change nothing', () => {
    expect(apply('Hangup', { uniqueid: '9.9', cause: '16' }, T0)).toBe(false);
  });

  it('not answered: the dial status, the cause, no answer and no duration', () => {
    routed('2.1');
    apply('DialBegin', { uniqueid: '2.1' }, T0 + 10);
    apply('DialEnd', { uniqueid: '2.1', dialstatus: 'BUSY' }, T0 + 500);
    apply('Hangup', { uniqueid: '2.1', cause: '17' }, T0 + 510);
    expect(listCalls(store.db, { limit: 10 }).calls[0]).toMatchObject({ state: 'ended', dialStatus: 'BUSY', hangupCause: 17, answeredAt: null, durationMs: null });
  });

  it('lost: open calls Asterisk no longer has; a later exact end still wins', () => {
    routed('3.1');
    routed('3.2');
    expect(markLostCalls(store.db, new Set(['3.2']), T0 + 100)).toBe(1);
    const byId = () => Object.fromEntries(listCalls(store.db, { limit: 10 }).calls.map((c) => [c.uniqueid, c]));
    expect(byId()['3.1']).toMatchObject({ state: 'lost', lostAt: T0 + 100, endedAt: null });
    expect(byId()['3.2']!.state).toBe('routed');
    apply('Hangup', { uniqueid: '3.1', cause: '16' }, T0 + 50);
    expect(byId()['3.1']).toMatchObject({ state: 'ended', lostAt: null, endedAt: T0 + 50 });
  });

  it('a Uniqueid seen again (another Asterisk) applies to its latest open call', () => {
    routed('4.1');
    apply('Hangup', { uniqueid: '4.1', cause: '16' }, T0 + 10);
    routed('4.1', D, T0 + 20);
    apply('Hangup', { uniqueid: '4.1', cause: '17' }, T0 + 30);
    expect(listCalls(store.db, { limit: 10 }).calls.map((c) => [c.hangupCause, c.endedAt])).toEqual([
      [17, T0 + 30],
      [16, T0 + 10],
    ]);
  });

  it('hang-ups: asked for by release --hangup, or due when the session ends', () => {
    routed('5.1');
    routed('5.2');
    apply('Hangup', { uniqueid: '5.2', cause: '16' }, T0 + 1);
    expect(callsToHangUp(store.db, T0 + 10)).toEqual([]);
    const ids = requestSessionHangup(store.db, 'order-1', T0 + 20);
    expect(ids).toHaveLength(1);
    expect(openCallCount(store.db, ids)).toBe(1);
    expect(callsToHangUp(store.db, T0 + 30)).toEqual([{ id: ids[0], uniqueid: '5.1', session: 'order-1', reason: 'release' }]);
    apply('Hangup', { uniqueid: '5.1', cause: '16' }, T0 + 40);
    expect(openCallCount(store.db, ids)).toBe(0);
    expect(listCalls(store.db, { limit: 10 }).calls.find((c) => c.uniqueid === '5.1')).toMatchObject({ hangupReason: 'release', hangupRequestedAt: T0 + 20 });

    routed('5.3');
    releaseSession(store.db, 'order-1', 0, T0 + 50);
    expect(callsToHangUp(store.db, T0 + 60)).toMatchObject([{ uniqueid: '5.3', reason: 'session-ended' }]);
    expect(listCalls(store.db, { limit: 10 }).calls[0]).toMatchObject({ hangupReason: 'session-ended', hangupRequestedAt: T0 + 60 });
  });

  it('filters: session, since, live, limit', () => {
    createSession(store.db, { id: 'order-2', first: party(mobile(3)), second: party(mobile(4)), now: T0 });
    routed('6.1', D, T0);
    recordRoutedCall(store.db, { uniqueid: '6.2', channel: 'PJSIP/y', session: 'order-2', target: mobile(4), at: T0 + 1_000 });
    routed('6.3', D, T0 + 2_000);
    apply('Hangup', { uniqueid: '6.3', cause: '16' }, T0 + 2_500);
    expect(listCalls(store.db, { session: 'order-2', limit: 10 }).calls.map((c) => c.uniqueid)).toEqual(['6.2']);
    expect(listCalls(store.db, { since: T0 + 1_000, limit: 10 }).calls.map((c) => c.uniqueid)).toEqual(['6.3', '6.2']);
    expect(listCalls(store.db, { live: true, limit: 10 }).calls.map((c) => c.uniqueid)).toEqual(['6.2', '6.1']);
    expect(listCalls(store.db, { limit: 2 })).toMatchObject({ more: true });
    expect(listCalls(store.db, { limit: 2 }).calls).toHaveLength(2);
  });

  it('--since: ISO times and durations back from now; anything else refused', () => {
    const now = Date.parse('2026-11-25T12:00:00Z');
    expect(parseSince('2h', now)).toBe(now - 7_200_000);
    expect(parseSince('2026-11-25', now)).toBe(Date.parse('2026-11-25T00:00:00Z'));
    expect(parseSince('2026-11-25T09:30:00Z', now)).toBe(Date.parse('2026-11-25T09:30:00Z'));
    expect(parseSince('2026-11-25T09:30', now)).toBe(Date.parse('2026-11-25T09:30:00Z'));
    expect(parseSince('2026-11-25T09:30:00+01:00', now)).toBe(Date.parse('2026-11-25T08:30:00Z'));
    for (const bad of ['yesterday', '2h30m', '', '2026-13-45', '1e9']) expect(() => parseSince(bad, now)).toThrow(/invalid --since/);
  });
});

describe('AMI settings for vnum serve', () => {
  it('off without a user; the secret from the environment or a file, never a flag', () => {
    expect(amiSettings({}, {})).toBeNull();
    expect(amiSettings({ amiUser: 'vnum' }, { VNUM_AMI_SECRET: 's3' })).toEqual({ host: '127.0.0.1', port: 5038, username: 'vnum', secret: 's3' });
    expect(() => amiSettings({ amiUser: 'vnum' }, {})).toThrow(/without a secret/);
    const file = join(store.dir, 'secret');
    writeFileSync(file, 'from-file\n', { mode: 0o600 });
    expect(amiSettings({}, { VNUM_AMI_USER: 'vnum', VNUM_AMI_SECRET_FILE: file, VNUM_AMI_PORT: '5039' })).toEqual({
      host: '127.0.0.1',
      port: 5039,
      username: 'vnum',
      secret: 'from-file',
    });
    writeFileSync(file, 'two\nlines\n');
    expect(() => amiSettings({ amiUser: 'vnum', amiSecretFile: file }, {})).toThrow(/line break/);
    expect(() => amiSettings({ amiUser: 'vnum', amiSecretFile: join(store.dir, 'none') }, {})).toThrow(/cannot read/);
    expect(() => amiSettings({ amiUser: 'vnum', amiPort: '99999' }, { VNUM_AMI_SECRET: 'x' })).toThrow(/AMI port/);
  });

  it('every mistake is a configuration error: a secret file others can read, AMI settings without a user, a bad host, a secret Asterisk would trim', () => {
    const file = join(store.dir, 'secret');
    writeFileSync(file, 'from-file\n', { mode: 0o600 });
    const refused = (flags: Parameters<typeof amiSettings>[0], env: NodeJS.ProcessEnv, pattern: RegExp) => {
      let error: unknown;
      try {
        amiSettings(flags, env);
      } catch (e) {
        error = e;
      }
      expect(error, String(pattern)).toBeInstanceOf(VnumError);
      expect((error as VnumError).code).toBe(ErrorCode.Configuration);
      expect((error as VnumError).message).toMatch(pattern);
    };
    // Readable by others (today only a warning, though the README promises owner-only).
    chmodSync(file, 0o644);
    refused({ amiUser: 'vnum', amiSecretFile: file }, {}, /not owner-only: mode 0644/);
    chmodSync(file, 0o604);
    refused({ amiUser: 'vnum', amiSecretFile: file }, {}, /not owner-only/);
    chmodSync(file, 0o600);
    expect(amiSettings({ amiUser: 'vnum', amiSecretFile: file }, {})?.secret).toBe('from-file');
    chmodSync(file, 0o400);
    expect(amiSettings({ amiUser: 'vnum', amiSecretFile: file }, {})?.secret).toBe('from-file');
    // Group access: only for a root-owned file the group may read (PostgreSQL's rule for its keys).
    expect(secretFileModeProblem(0o100640, 0)).toBeNull();
    expect(secretFileModeProblem(0o100640, 1000)).toMatch(/chmod 600/);
    expect(secretFileModeProblem(0o100660, 0)).toMatch(/0660/);
    expect(secretFileModeProblem(0o100600, 1000)).toBeNull();
    // Not a regular file: a folder, a FIFO would hang the start.
    refused({ amiUser: 'vnum', amiSecretFile: store.dir }, {}, /not a regular file/);
    const fifo = join(store.dir, 'fifo');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    refused({ amiUser: 'vnum', amiSecretFile: fifo }, {}, /not a regular file/);
    // Settings that would do nothing without a user.
    refused({}, { VNUM_AMI_SECRET_FILE: file }, /VNUM_AMI_SECRET_FILE given without an AMI user/);
    refused({ amiHost: '10.0.0.1' }, {}, /--ami-host\/VNUM_AMI_HOST given without an AMI user/);
    refused({}, { VNUM_AMI_SECRET: 'x', VNUM_AMI_PORT: '5038' }, /VNUM_AMI_PORT, VNUM_AMI_SECRET given without/);
    // Bad values.
    refused({ amiUser: 'vnum', amiHost: 'not a host' }, { VNUM_AMI_SECRET: 'x' }, /invalid AMI host/);
    refused({ amiUser: 'vnum', amiPort: '0' }, { VNUM_AMI_SECRET: 'x' }, /invalid AMI port/);
    refused({ amiUser: 'vn um' }, { VNUM_AMI_SECRET: 'x' }, /invalid AMI user/);
    refused({ amiUser: 'vnum' }, { VNUM_AMI_SECRET: ' padded ' }, /trims/);
    refused({ amiUser: 'vnum' }, { VNUM_AMI_SECRET: 'a\r\nAction: Originate' }, /line break/);
  });
});

describe('the call tracker in vnum serve, against a fake AMI', () => {
  const fakes: FakeAmi[] = [];
  const stops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
    await Promise.all(fakes.splice(0).map((f) => f.stop()));
  });

  async function serveSide(options: { silent?: Set<string> } = {}) {
    const side = await trackerOnFakeAmi(store.path, { fake: { silent: options.silent } });
    stops.push(side.stop);
    return side;
  }

  const inbound = (uniqueId: string) => ({
    callerId: A,
    extension: '+442079460001',
    dnid: '',
    uniqueId,
    channel: `PJSIP/carrier-${uniqueId.replace('.', '')}`,
    request: 'agi://127.0.0.1:4573/route',
  });
  const bridge: RouteAnswer = { status: 'BRIDGE', target: D, presentedCallerId: '+442079460002', session: 'order-1' };
  const calls = () => listCalls(store.db, { limit: 10 }).calls;
  /** A tracker without AMI (no call log, only its status row), started and seen in the store. */
  function trackerWithoutAmi(router: string, heartbeatMs?: number) {
    const log = captureLog();
    const tracker = new CallTracker({ dbPath: store.path, ami: null, router, logger: log.logger, heartbeatMs });
    tracker.start();
    return { log, tracker };
  }

  it('records a bridged call and fills it from the events; refusals and other channels leave no row', async () => {
    const { fake, tracker } = await serveSide();
    tracker.routed(inbound('7.1'), bridge);
    tracker.routed(inbound('7.2'), { status: 'NO_SESSION', target: '', presentedCallerId: '', session: '' });
    tracker.routed({ ...inbound('7.3'), uniqueId: 'bad id' }, bridge);
    await until(() => calls().length === 1);
    fake.event('DialBegin', 'call', [['Timestamp', '1795600001.000000'], ['Uniqueid', '7.1'], ['DestUniqueid', '7.9']]);
    fake.event('DialEnd', 'call', [['Timestamp', '1795600003.250000'], ['Uniqueid', '7.1'], ['DialStatus', 'ANSWER']]);
    fake.event('Hangup', 'call', [['Timestamp', '1795600013.750000'], ['Uniqueid', '7.9'], ['Cause', '16']]);
    fake.event('Hangup', 'call', [['Timestamp', '1795600013.750100'], ['Uniqueid', '7.1'], ['Cause', '16'], ['Cause-txt', 'Normal Clearing']]);
    await until(() => calls()[0]?.state === 'ended');
    expect(calls()[0]).toMatchObject({ uniqueid: '7.1', caller: 'first', answeredAt: 1795600003250, endedAt: 1795600013750, durationMs: 10_500, dialStatus: 'ANSWER' });
  });

  it('after a login, open calls Asterisk does not have are marked lost', async () => {
    recordRoutedCall(store.db, { uniqueid: '8.1', channel: 'PJSIP/a', session: 'order-1', target: D, at: T0 });
    recordRoutedCall(store.db, { uniqueid: '8.2', channel: 'PJSIP/b', session: 'order-1', target: D, at: T0 });
    const fake = new FakeAmi();
    fake.channels = [{ channel: 'PJSIP/b', uniqueid: '8.2' }];
    await fake.listen();
    fakes.push(fake);
    const log = captureLog();
    const ami = new AmiClient({ host: '127.0.0.1', port: fake.port, username: 'vnum', secret: 'secret', eventClasses: ['call'], events: CALL_EVENTS, logger: log.logger, pingIntervalMs: 0 });
    const tracker = new CallTracker({ dbPath: store.path, ami, router: 'r', logger: log.logger, hangupCheckMs: 1_000_000 });
    tracker.start();
    ami.start();
    stops.push(async () => {
      await ami.stop();
      await tracker.stop();
    });
    await until(() => calls().some((c) => c.state === 'lost'), 3_000);
    expect(Object.fromEntries(calls().map((c) => [c.uniqueid, c.state]))).toEqual({ '8.1': 'lost', '8.2': 'routed' });
  });

  it('hangs up, by Uniqueid, a call asked for and a call whose session ended; a channel already gone is lost', async () => {
    const { fake, tracker } = await serveSide();
    fake.channels = [{ channel: 'PJSIP/carrier-91', uniqueid: '9.1' }];
    tracker.routed(inbound('9.1'), bridge);
    tracker.routed(inbound('9.2'), bridge);
    await until(() => calls().length === 2);
    // The fake hangs up by exact Channel value: the Uniqueid is what must be sent.
    fake.channels = [{ channel: '9.1', uniqueid: '9.1' }];
    requestSessionHangup(store.db, 'order-1', Date.now());
    await until(() => fake.actions('hangup').length >= 2, 3_000);
    expect(fake.actions('hangup').map((a) => [a.get('Channel'), a.get('Cause')]).sort()).toEqual([
      ['9.1', '16'],
      ['9.2', '16'],
    ]);
    // 9.2 is not in Asterisk: no Hangup event will come for it.
    await until(() => calls().find((c) => c.uniqueid === '9.2')?.state === 'lost', 3_000);
    fake.event('Hangup', 'call', [['Uniqueid', '9.1'], ['Cause', '16']]);
    await until(() => calls().find((c) => c.uniqueid === '9.1')?.state === 'ended');

    tracker.routed(inbound('9.3'), bridge);
    await until(() => calls().length === 3);
    fake.channels = [{ channel: '9.3', uniqueid: '9.3' }];
    releaseSession(store.db, 'order-1', 0, Date.now());
    await until(() => fake.actions('hangup').some((a) => a.get('Channel') === '9.3'), 3_000);
    expect(calls().find((c) => c.uniqueid === '9.3')).toMatchObject({ hangupReason: 'session-ended' });
  });

  it('reports AMI to router_status for vnum health, and "stopped" at the end', async () => {
    const { tracker, ami } = await serveSide();
    await until(() => readRouterStatus(store.db, '127.0.0.1:4573')?.amiState === 'logged-in', 3_000);
    expect(readRouterStatus(store.db, '127.0.0.1:4573')).toMatchObject({ pid: process.pid, asteriskVersion: '22.10.1', amiError: null });
    await ami.stop();
    await tracker.stop();
    expect(readRouterStatus(store.db, '127.0.0.1:4573')!.amiState).toBe('stopped');
  });

  it('without AMI: no call log, and the status says "disabled"', async () => {
    const { tracker } = trackerWithoutAmi('x:1');
    tracker.routed(inbound('10.1'), bridge);
    await until(() => readRouterStatus(store.db, 'x:1') !== undefined);
    expect(readRouterStatus(store.db, 'x:1')!.amiState).toBe('disabled');
    expect(calls()).toEqual([]);
    await tracker.stop();
  });

  it('a database replaced by mv (a restore) gets the log and the status from then on, not the old file', async () => {
    const { log, tracker } = trackerWithoutAmi('r:1', 30);
    await until(() => readRouterStatus(store.db, 'r:1') !== undefined);
    // Only the tracker has the old file open now (WAL files go by path: a second
    // connection would keep the old -wal beside the new file).
    store.db.close();
    const restored = join(store.dir, 'restored.db');
    openDb(restored).close();
    renameSync(restored, store.path);
    try {
      await until(() => log.records().some((r) => r.msg === 'call log: database file replaced or removed: reopening'), 3_000);
      await until(() => {
        const fresh = openDb(store.path);
        try {
          return readRouterStatus(fresh, 'r:1') !== undefined;
        } finally {
          fresh.close();
        }
      }, 3_000);
    } finally {
      await tracker.stop();
    }
  });

  it('a database deleted under it is not recreated by the log or the status: nothing at the path until one is restored', async () => {
    const { log, tracker } = trackerWithoutAmi('d:1', 20);
    await until(() => readRouterStatus(store.db, 'd:1') !== undefined);
    store.db.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(store.path + suffix, { force: true });
    try {
      await until(() => log.records().some((r) => r.msg === 'call log: database unusable; retrying'), 3_000);
      await sleep(100);
      expect(existsSync(store.path)).toBe(false);
    } finally {
      await tracker.stop();
    }
    expect(existsSync(store.path)).toBe(false);
  });

  it('a write lock held by another process delays the log, never loses it', async () => {
    const { fake, tracker } = await serveSide();
    tracker.routed(inbound('11.1'), bridge);
    await until(() => calls().length === 1);
    const blocker = await holdLock(store.path, 'BEGIN IMMEDIATE', 600);
    fake.event('Hangup', 'call', [['Uniqueid', '11.1'], ['Cause', '16']]);
    await blocker.exited;
    await until(() => calls()[0]?.state === 'ended', 3_000);
  });
});
