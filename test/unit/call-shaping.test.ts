/**
 * Issue 14 without Asterisk: sliding sessions (the push on the write path,
 * its bounds, release winning), a session's call settings and what the
 * router makes of them, recordings measured and pruned, and the CLI's and
 * `vnum serve`'s refusals of bad settings (nothing written).
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSession, findSession, getSession, releaseSession, touchSession } from '../../src/session/sessions.js';
import { reportSessionEnds } from '../../src/session/events.js';
import { setRecording } from '../../src/webhooks/outbox.js';
import { writeTransaction } from '../../src/store/db.js';
import { parseCallSettings, storedCallSettings, validateCallSettings } from '../../src/session/call-settings.js';
import { decideRoute } from '../../src/routing/decide.js';
import { decidePin } from '../../src/routing/pin.js';
import { CallTracker } from '../../src/calls/tracker.js';
import { storeBridgeLookup } from '../../src/routing/lookup.js';
import { answerFor, channelVariables, CALL_VARIABLES } from '../../src/routing/answer.js';
import { listCalls, recordRoutedCall, applyCallFact } from '../../src/calls/store.js';
import { sweepRecordings, SETTLE_MS } from '../../src/calls/recordings.js';
import { ErrorCode } from '../../src/errors.js';
import { mobile, party } from '../support/store.js';
import { useStore } from '../support/use-store.js';
import { errorOf } from '../support/errors.js';
import { captureLog } from '../support/log.js';
import { useCliDatabase } from '../support/cli.js';
import { readRepo } from '../support/repo.js';
import { until } from '../support/wait.js';

const store = useStore({ dids: 4 });

const A = mobile(1);
const D = mobile(2);
const S = 1_000;

function route(caller: string, dialled: string, now: number) {
  return decideRoute({ caller, dialled }, now, storeBridgeLookup(store.db), { defaultCountry: 'GB' });
}

function sliding(idleMs: number, ttlMs?: number, id = 'slide') {
  return createSession(store.db, { id, first: party(A), second: party(D), now: 0, idleMs, ttlMs }).session;
}

describe('sliding TTL', () => {
  it('ends after the idle timeout without calls; each call pushes the end forward, both bridges with it', () => {
    const s = sliding(10 * S);
    expect(s.endsAt).toBe(10 * S);
    expect(s.expiresAt).toBeNull();
    expect(touchSession(store.db, 'slide', 8 * S)).toBe(true);
    expect(getSession(store.db, 'slide', 8 * S).endsAt).toBe(18 * S);
    // Past the end it would have had, both directions still bridge; the routing read itself wrote nothing.
    expect(route(D, s.parties[0].maskedAs, 15 * S).status).toBe('BRIDGE');
    expect(route(A, s.parties[1].maskedAs, 15 * S).status).toBe('BRIDGE');
    expect(getSession(store.db, 'slide', 15 * S).endsAt).toBe(18 * S);
    // Silence: ended at lookup time, whether or not anything swept.
    expect(route(A, s.parties[1].maskedAs, 18 * S)).toMatchObject({ status: 'ENDED', session: 'slide' });
  });

  it('a push moves the webhook end with the session: session.ended comes at the pushed end, cause idle', () => {
    writeTransaction(store.db, () => setRecording(store.db, true, 1));
    sliding(10 * S);
    const tracked = () => store.db.prepare('SELECT ends_at AS endsAt, session_id AS session FROM webhook_session_end').all();
    expect(tracked()).toEqual([{ endsAt: 10 * S, session: 'slide' }]);
    expect(touchSession(store.db, 'slide', 8 * S)).toBe(true);
    expect(tracked()).toEqual([{ endsAt: 18 * S, session: 'slide' }]);
    const ended = () =>
      store.db.prepare<[], { occurred_at: number; data: string }>("SELECT occurred_at, data FROM webhook_event WHERE type = 'session.ended'").all();
    const sweep = (now: number) => reportSessionEnds(store.db, now, (id) => findSession(store.db, id, now));
    expect(sweep(10 * S)).toBe(0);
    expect(ended()).toEqual([]);
    expect(sweep(18 * S)).toBe(1);
    expect(ended()).toHaveLength(1);
    expect(ended()[0]!.occurred_at).toBe(18 * S);
    expect(JSON.parse(ended()[0]!.data).cause).toBe('idle');
  });

  it('never past the hard maximum (the TTL), never backwards', () => {
    sliding(10 * S, 25 * S);
    expect(touchSession(store.db, 'slide', 8 * S)).toBe(true);
    expect(touchSession(store.db, 'slide', 16 * S)).toBe(true);
    expect(getSession(store.db, 'slide', 16 * S).endsAt).toBe(25 * S);
    expect(touchSession(store.db, 'slide', 21 * S)).toBe(false);
    expect(touchSession(store.db, 'slide', 5 * S)).toBe(false);
    expect(getSession(store.db, 'slide', 21 * S).endsAt).toBe(25 * S);
  });

  it('release wins over activity; an ended session is never revived; a fixed session is never touched', () => {
    sliding(10 * S);
    releaseSession(store.db, 'slide', 60 * S, 2 * S);
    // Grace ends no later than the idle end, and no call moves it.
    expect(getSession(store.db, 'slide', 2 * S).endsAt).toBe(10 * S);
    expect(touchSession(store.db, 'slide', 9 * S)).toBe(false);
    expect(getSession(store.db, 'slide', 9 * S).endsAt).toBe(10 * S);

    createSession(store.db, { id: 'idle', first: party(mobile(3)), second: party(mobile(4)), now: 0, idleMs: 10 * S });
    expect(touchSession(store.db, 'idle', 10 * S)).toBe(false);
    expect(getSession(store.db, 'idle', 11 * S).state).toBe('ended');

    createSession(store.db, { id: 'fixed', first: party(mobile(5)), second: party(mobile(6)), now: 0, ttlMs: 10 * S });
    expect(touchSession(store.db, 'fixed', 5 * S)).toBe(false);
    expect(getSession(store.db, 'fixed', 5 * S).endsAt).toBe(10 * S);
    expect(touchSession(store.db, 'no-such-session', 5 * S)).toBe(false);
  });

  it('a call in progress keeps it alive with one write per half idle timeout', () => {
    sliding(10 * S);
    expect(touchSession(store.db, 'slide', 4 * S, true)).toBe(false); // end 10 s, would be 14 s: less than half a timeout on
    expect(touchSession(store.db, 'slide', 6 * S, true)).toBe(true);
    expect(getSession(store.db, 'slide', 6 * S).endsAt).toBe(16 * S);
  });

  it('bounds: 5 s to a year, no longer than its TTL, and a retry must ask the same', () => {
    for (const idleMs of [0, -1, 4_999, 1.5, 366 * 86_400_000]) {
      expect(errorOf(() => sliding(idleMs)).code, String(idleMs)).toBe(ErrorCode.InvalidArgument);
    }
    expect(errorOf(() => sliding(20 * S, 10 * S)).message).toMatch(/not be longer than the TTL/);
    sliding(10 * S);
    expect(errorOf(() => sliding(11 * S)).code).toBe(ErrorCode.SessionConflict);
    expect(createSession(store.db, { id: 'slide', first: party(A), second: party(D), now: 1, idleMs: 10 * S }).created).toBe(false);
  });
});

describe('call settings', () => {
  it('sound names keep to the safe alphabet; bounds hold; the warning comes before the end', () => {
    for (const bad of ['beep,1)', 'a&b', '../etc/passwd', '${X}', 'beep.gsm', 'a b', 'x^y', 'a//b', '/abs', 'a/b/c/d/e', '']) {
      expect(errorOf(() => validateCallSettings({ calleeAnnouncement: bad })).code, bad).toBe(ErrorCode.InvalidArgument);
    }
    expect(validateCallSettings({ calleeAnnouncement: 'followme/call-from' })).toEqual({ calleeAnnouncement: 'followme/call-from' });
    expect(errorOf(() => validateCallSettings({ callerAnnouncement: 'a/b' })).code).toBe(ErrorCode.InvalidArgument);
    for (const ms of [0, -1000, 500, 1500, 301_000]) {
      expect(errorOf(() => validateCallSettings({ ringTimeoutMs: ms })).code, String(ms)).toBe(ErrorCode.InvalidArgument);
    }
    expect(errorOf(() => validateCallSettings({ callLimitMs: 87_000_000 })).code).toBe(ErrorCode.InvalidArgument);
    expect(errorOf(() => validateCallSettings({ callLimitMs: 60 * S, limitWarningMs: 60 * S })).message).toMatch(/before the end/);
    expect(storedCallSettings({})).toBeNull();
    expect(parseCallSettings('{"calleeAnnouncement":"beep,1"}')).toBeUndefined();
    expect(parseCallSettings('{"other":1}')).toBeUndefined();
    expect(parseCallSettings('not json')).toBeUndefined();
  });

  it('the router answers them as channel variables, over vnum serve\'s defaults; plain sessions answer as before', () => {
    const plain = createSession(store.db, { id: 'plain', first: party(A), second: party(D), now: 0 }).session;
    const plainAnswer = answerFor(route(A, plain.parties[1].maskedAs, 1))!;
    expect(channelVariables(plainAnswer).map(([k]) => k)).toEqual(['VNUM_STATUS', 'VNUM_TARGET', 'VNUM_CLI', 'VNUM_SESSION']);

    const shaped = createSession(store.db, {
      id: 'shaped', first: party(mobile(3)), second: party(mobile(4)), now: 0,
      callSettings: { calleeAnnouncement: 'followme/call-from', callLimitMs: 600 * S, limitWarningMs: 30 * S, ringTimeoutMs: 20 * S, record: true },
    }).session;
    const decision = route(mobile(3), shaped.parties[1].maskedAs, 1);
    expect(channelVariables(answerFor(decision, undefined, { recordingNotice: 'custom/recorded', callerAnnouncement: 'vnumwait' })!)).toEqual([
      ['VNUM_STATUS', 'BRIDGE'], ['VNUM_TARGET', mobile(4)], ['VNUM_CLI', shaped.parties[0].maskedAs], ['VNUM_SESSION', 'shaped'],
      ['VNUM_RING_TIMEOUT_S', '20'], ['VNUM_CALL_LIMIT_S', '600'], ['VNUM_LIMIT_WARNING_S', '30'], ['VNUM_LIMIT_WARNING_SOUND', 'beep'],
      ['VNUM_CALLEE_SOUND', 'followme/call-from'], ['VNUM_CALLER_MOH', 'vnumwait'], ['VNUM_RECORD', '1'], ['VNUM_CONSENT_SOUND', 'custom/recorded'],
    ]);
    // Recording asked for, but this router cannot record: bridged, not recorded, and said so.
    const unrecorded = answerFor(decision, undefined, {})!;
    expect(unrecorded.call?.record).toBe('');
    expect(unrecorded.recordingUnavailable).toBe(true);
    // A default that fails the alphabet (or stored settings vnum did not write) fails closed.
    expect(answerFor(decision, undefined, { calleeAnnouncement: 'x,1)' })).toBeDefined(); // the session's own wins
    expect(answerFor(route(A, plain.parties[1].maskedAs, 1), undefined, { calleeAnnouncement: 'x,1)' })).toBeUndefined();
    expect(answerFor({ ...decision, callSettings: '{"calleeAnnouncement":"beep&x"}' })).toBeUndefined();
  });

  it('vnum.conf starts every call variable empty and reads each; dialplan/README.md names them', () => {
    const conf = readRepo('dialplan/vnum.conf');
    const readme = readRepo('dialplan/README.md');
    const section = readme.slice(readme.indexOf('### Call shaping'), readme.indexOf('## What a call does'));
    expect([...section.matchAll(/^\| `(VNUM_[A-Z_]+)` \| (.*) \|$/gm)].map((r) => r[1])).toEqual(Object.values(CALL_VARIABLES));
    for (const name of Object.values(CALL_VARIABLES)) {
      expect(conf, name).toContain(`LOCAL(${name})=`);
      expect(conf, name).toContain(`\${${name}}`);
      expect(readme, name).toContain(`\`${name}\``);
    }
  });
});

describe('a PIN-bridged call', () => {
  it('is shaped and slides its session exactly as the bridged call of the party whose PIN it is', async () => {
    const s = createSession(store.db, {
      id: 'pinned', first: party(A), second: party(D), now: 0, idleMs: 10 * S,
      callSettings: { calleeAnnouncement: 'followme/call-from', callLimitMs: 600 * S, limitWarningMs: 30 * S, ringTimeoutMs: 20 * S },
    }).session;
    const [a, d] = s.parties;
    // A's own call on D's masked number, and a stranger typing A's PIN there: the same decision, only marked via pin.
    const own = route(A, d.maskedAs, S);
    const pinned = decidePin({ dialled: d.maskedAs, pin: a.pin! }, S, storeBridgeLookup(store.db), { defaultCountry: 'GB' });
    expect(own).toMatchObject({ status: 'BRIDGE', idleMs: 10 * S, callSettings: expect.stringContaining('followme/call-from') });
    expect(pinned).toEqual({ ...own, via: 'pin', dialled: d.maskedAs });
    const pinnedAnswer = answerFor(pinned)!;
    expect(channelVariables(pinnedAnswer)).toEqual(channelVariables(answerFor(own)!));
    expect(channelVariables(pinnedAnswer)).toContainEqual(['VNUM_CALL_LIMIT_S', '600']);

    // Through vnum serve's write path: the PIN-bridged call at 8 s pushes the end from 10 s to 18 s.
    const log = captureLog();
    const tracker = new CallTracker({ dbPath: store.path, ami: null, router: 'r:1', logger: log.logger, now: () => 8 * S });
    tracker.start();
    try {
      tracker.routed({ uniqueId: '1700000000.1', channel: 'PJSIP/carrier-1', callerId: 'anonymous' }, pinnedAnswer, pinned);
      await until(() => getSession(store.db, 'pinned', 8 * S).endsAt === 18 * S, 3_000);
    } finally {
      await tracker.stop();
    }
    expect(getSession(store.db, 'pinned', 8 * S).endsAt).toBe(18 * S);
  });
});

describe('recordings', () => {
  it('measured once the call is over (none: never answered), deleted after retention, the deletion logged', () => {
    createSession(store.db, { id: 'rec', first: party(A), second: party(D), now: 0 });
    const dir = join(store.dir, 'recordings');
    mkdirSync(dir);
    const answered = join(dir, '1700000000.1.wav');
    writeFileSync(answered, Buffer.alloc(4_044));
    for (const [uniqueid, file] of [['1700000000.1', answered], ['1700000000.2', join(dir, '1700000000.2.wav')]] as const) {
      recordRoutedCall(store.db, { uniqueid, channel: 'PJSIP/carrier-1', session: 'rec', target: D, at: 0, recording: file });
      applyCallFact(store.db, { kind: 'hangup', uniqueid, at: 10 * S, cause: 16, causeText: 'Normal Clearing' });
    }
    const log = captureLog();
    const settings = { dir, retentionMs: 60 * S };
    sweepRecordings(store.db, settings, 10 * S + SETTLE_MS - 1, log.logger);
    expect(listCalls(store.db, { limit: 10 }).calls.map((c) => c.recording?.bytes ?? null)).toEqual([null, null]);
    sweepRecordings(store.db, settings, 10 * S + SETTLE_MS + 1, log.logger);
    const [missing, kept] = listCalls(store.db, { limit: 10 }).calls;
    expect(missing!.recording).toBeNull();
    expect(kept!.recording).toEqual({ path: answered, bytes: 4_044, deletedAt: null });
    sweepRecordings(store.db, settings, 70 * S, log.logger);
    expect(existsSync(answered)).toBe(true);
    sweepRecordings(store.db, settings, 70 * S + 1, log.logger);
    expect(existsSync(answered)).toBe(false);
    expect(listCalls(store.db, { limit: 10 }).calls[1]!.recording).toEqual({ path: answered, bytes: 4_044, deletedAt: 70 * S + 1 });
    expect(log.records().filter((r) => r.msg === 'recording deleted: retention period over')).toEqual([
      expect.objectContaining({ call: kept!.id, session: 'rec', file: '1700000000.1.wav', existed: true }),
    ]);
  });
});

describe('the CLI refuses bad settings, and writes nothing', () => {
  const cli = useCliDatabase('vnum-shape-');
  const BAD: Array<[string[], RegExp]> = [
    [['--idle-timeout', '-5s'], /invalid --idle-timeout "-5s"/],
    [['--idle-timeout', '1s'], /--idle-timeout "1s": from 5s to 365d/],
    [['--idle-timeout', '999999999d'], /--idle-timeout/],
    [['--idle-timeout', '2h', '--ttl', '1h'], /not be longer than the TTL/],
    [['--ring-timeout', '0s'], /--ring-timeout/],
    [['--ring-timeout', '10m'], /--ring-timeout "10m": from 1s to 5m/],
    [['--call-limit', '2d'], /--call-limit/],
    [['--call-limit', '1500ms'], /whole seconds/],
    [['--call-limit', '60s', '--limit-warning', '90s'], /before the end/],
    [['--callee-announcement', 'beep,1)'], /invalid --callee-announcement "beep,1\)"/],
    [['--callee-announcement', 'x&Dial(PJSIP/+447700900999)'], /an Asterisk sound name/],
    [['--callee-announcement', '../../etc/shadow'], /an Asterisk sound name/],
    [['--caller-announcement', 'moh)'], /a music-on-hold class name/],
  ];
  it.each(BAD)('session create %j: exit 1, the cause named, no session', (flags, cause) => {
    expect(cli.run('pool', 'add', '+442079460001', '+442079460002').code).toBe(0);
    const r = cli.run('session', 'create', 'o-1', '+447911000001', '+447911000002', ...flags);
    expect(r.stderr).toMatch(cause);
    expect(r.code).toBe(1);
    expect(JSON.parse(cli.run('session', 'list', '--json').stdout)).toEqual([]);
  });

  it('a good one shows its settings, in JSON too', () => {
    expect(cli.run('pool', 'add', '+442079460001', '+442079460002').code).toBe(0);
    const r = cli.run('session', 'create', 'o-1', '+447911000001', '+447911000002', '--idle-timeout', '10m', '--ttl', '2h',
      '--callee-announcement', 'followme/call-from', '--call-limit', '30m', '--limit-warning', '1m', '--ring-timeout', '45s', '--no-record', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      idleTimeoutMs: 600_000,
      calls: { calleeAnnouncement: 'followme/call-from', callLimitMs: 1_800_000, limitWarningMs: 60_000, ringTimeoutMs: 45_000, record: false },
    });
  });
});

describe('vnum serve refuses recording settings that cannot work, before opening anything', () => {
  const cli = useCliDatabase('vnum-serve-rec-');
  it.each([
    [['--record'], /--record needs --recordings-dir/],
    [['--recordings-dir', '/nonexistent-vnum-dir', '--recording-notice', 'beep'], /no such folder/],
    [['--recordings-dir', 'relative/dir', '--recording-notice', 'beep'], /an absolute path/],
    [['--recordings-dir', '/tmp'], /needs --recording-notice/],
    [['--recordings-dir', '/tmp', '--recording-notice', 'beep'], /needs AMI/],
    [['--recording-notice', 'a,b'], /invalid --recording-notice/],
    [['--recording-retention', '0s'], /invalid --recording-retention/],
    [['--limit-warning-sound', 'beep)'], /invalid --limit-warning-sound/],
    [['--callee-announcement', '$x'], /invalid --callee-announcement/],
  ])('serve %j', (flags, cause) => {
    const r = cli.run('serve', '--port', '45999', ...flags);
    expect(r.stderr).toMatch(cause);
    expect(r.code).toBe(1);
    expect(existsSync(cli.db)).toBe(false);
  });
});
