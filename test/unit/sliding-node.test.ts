/**
 * Sliding sessions on a cluster node, without PostgreSQL: the rule both
 * stores share (slidePlan), the queue to the authority (coalesced per
 * session, bounded, bounded retries, never waiting on the caller), and the
 * call log's choice between writing the file (a single box) and never
 * writing it (a replica file: queued for the authority, or skipped and
 * warned about once). test/cluster/sliding.test.ts does the same against a
 * real PostgreSQL and two replicas.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SlideQueue, type PushResult, type SlidePush } from '../../src/calls/slide-queue.js';
import { SlidingSessions } from '../../src/calls/sliding.js';
import { CallTracker } from '../../src/calls/tracker.js';
import { answerFor } from '../../src/routing/answer.js';
import { decideRoute } from '../../src/routing/decide.js';
import { storeBridgeLookup } from '../../src/routing/lookup.js';
import { createSession, getSession, releaseSession, slidePlan, type SlideRow } from '../../src/session/sessions.js';
import { vnum } from '../support/cli.js';
import { captureLog } from '../support/log.js';
import { startServe } from '../support/serve.js';
import { mobile, party } from '../support/store.js';
import { useStore } from '../support/use-store.js';
import { until } from '../support/wait.js';

const S = 1_000;

describe('the sliding rule (slidePlan), as the single box and the authority apply it', () => {
  const row = (r: Partial<SlideRow>): SlideRow => ({ idle_ms: 10 * S, released_at: null, ends_at: 10 * S, expires_at: null, ...r });
  it('moves a live sliding session to at + idle, never past its TTL, never backwards', () => {
    expect(slidePlan(row({}), 8 * S)).toBe(18 * S);
    expect(slidePlan(row({ expires_at: 15 * S }), 8 * S)).toBe(15 * S);
    expect(slidePlan(row({ ends_at: 18 * S }), 5 * S)).toBeUndefined();
    expect(slidePlan(row({ ends_at: 15 * S, expires_at: 15 * S }), 9 * S)).toBeUndefined();
  });
  it('never a released, ended, fixed or missing session', () => {
    expect(slidePlan(row({ released_at: 1 * S, ends_at: 20 * S }), 8 * S)).toBeUndefined();
    expect(slidePlan(row({}), 10 * S)).toBeUndefined();
    expect(slidePlan(row({ idle_ms: null }), 8 * S)).toBeUndefined();
    expect(slidePlan(undefined, 8 * S)).toBeUndefined();
  });
  it('a keep-alive moves it only once the end is less than half an idle timeout away', () => {
    expect(slidePlan(row({}), 4 * S, true)).toBeUndefined(); // 14 - 10 = 4 s: not more than 5 s
    expect(slidePlan(row({}), 6 * S, true)).toBe(16 * S);
    expect(slidePlan(row({}), 4 * S, false)).toBe(14 * S);
  });
});

/** A sender whose answers the test gives, one push at a time. */
function heldSender() {
  const sent: SlidePush[] = [];
  const answers: Array<(r: PushResult | Error) => void> = [];
  const send = (push: SlidePush) =>
    new Promise<PushResult>((resolve, reject) => {
      sent.push({ ...push });
      answers.push((r) => (r instanceof Error ? reject(r) : resolve(r)));
    });
  const answer = async (r: PushResult | Error) => {
    await until(() => answers.length > 0, 2_000);
    answers.shift()!(r);
  };
  return { sent, send, answer, waiting: () => answers.length };
}

describe('the queue to the authority', () => {
  it('coalesces per session while one push is out: the latest activity, and a call outranks a keep-alive', async () => {
    const log = captureLog();
    const sender = heldSender();
    const queue = new SlideQueue({ send: sender.send, logger: log.logger });
    queue.offer({ session: 'a', at: 1, keepAlive: true });
    await until(() => sender.sent.length === 1, 2_000);
    // While a's push is out: four more for b and a, coalesced into one each.
    queue.offer({ session: 'b', at: 2, keepAlive: true });
    queue.offer({ session: 'a', at: 5, keepAlive: true });
    queue.offer({ session: 'b', at: 4, keepAlive: false });
    queue.offer({ session: 'b', at: 3, keepAlive: true });
    queue.offer({ session: 'a', at: 7, keepAlive: true });
    expect(queue.size).toBe(2);
    await sender.answer('pushed');
    await sender.answer('unchanged');
    await sender.answer('pushed');
    await queue.idle();
    expect(sender.sent).toEqual([
      { session: 'a', at: 1, keepAlive: true },
      { session: 'b', at: 4, keepAlive: false },
      { session: 'a', at: 7, keepAlive: true },
    ]);
    expect(queue.counts).toEqual({ pushed: 2, unchanged: 1, failed: 0, skipped: 0 });
  });

  it('is bounded: past maxPending sessions a new one is dropped and counted, never waited for', async () => {
    const log = captureLog();
    const sender = heldSender();
    const queue = new SlideQueue({ send: sender.send, logger: log.logger, maxPending: 2 });
    queue.offer({ session: 's0', at: 1, keepAlive: false });
    await until(() => sender.sent.length === 1, 2_000);
    for (let i = 1; i <= 5; i++) queue.offer({ session: `s${i}`, at: 1, keepAlive: false });
    // s1 and s2 wait; s3-s5 dropped; a session already waiting still coalesces.
    queue.offer({ session: 's1', at: 9, keepAlive: false });
    expect(queue.size).toBe(2);
    expect(queue.counts.failed).toBe(3);
    expect(log.records().filter((r) => String(r.msg).startsWith('sliding push dropped'))).toHaveLength(1);
    for (let i = 0; i < 3; i++) await sender.answer('pushed');
    await queue.idle();
    expect(sender.sent.map((p) => `${p.session}@${p.at}`)).toEqual(['s0@1', 's1@9', 's2@1']);
    expect(queue.counts).toMatchObject({ pushed: 3, failed: 3 });
  });

  it('retries a failed push a bounded number of times, then drops it with a log line and a count; the next is sent', async () => {
    const log = captureLog();
    const sender = heldSender();
    const queue = new SlideQueue({ send: sender.send, logger: log.logger, attempts: 3, retryDelayMs: 10 });
    queue.offer({ session: 'down', at: 1, keepAlive: false });
    queue.offer({ session: 'next', at: 1, keepAlive: false });
    for (let i = 0; i < 3; i++) await sender.answer(new Error('connect ECONNREFUSED'));
    await sender.answer('pushed');
    await queue.idle();
    expect(sender.sent.map((p) => p.session)).toEqual(['down', 'down', 'down', 'next']);
    expect(queue.counts).toMatchObject({ pushed: 1, failed: 1 });
    const dropped = log.records().find((r) => String(r.msg).startsWith('sliding push dropped'));
    expect(dropped).toMatchObject({ session: 'down', err: 'connect ECONNREFUSED', dropped: 1 });
    // A push that succeeds on a retry counts once, as pushed.
    queue.offer({ session: 'flaky', at: 2, keepAlive: false });
    await sender.answer(new Error('timeout'));
    await sender.answer('pushed');
    await queue.idle();
    expect(queue.counts).toMatchObject({ pushed: 2, failed: 1 });
  });

  it('at stop, what still waits after the grace is dropped and counted', async () => {
    const log = captureLog();
    const sender = heldSender();
    const queue = new SlideQueue({ send: sender.send, logger: log.logger });
    queue.offer({ session: 'out', at: 1, keepAlive: false });
    queue.offer({ session: 'waiting', at: 1, keepAlive: false });
    await until(() => sender.waiting() === 1, 2_000);
    await queue.close(50);
    expect(queue.counts.failed).toBe(1);
    queue.offer({ session: 'late', at: 1, keepAlive: false });
    expect(queue.size).toBe(0);
    expect(log.records().some((r) => String(r.msg).startsWith('sliding pushes not sent at stop'))).toBe(true);
  });
});

describe("vnum serve's call log and a sliding session", () => {
  const store = useStore({ dids: 4 });

  const A = mobile(1);
  const D = mobile(2);
  const claim = () =>
    store.db.prepare("INSERT INTO replica_health (id, node, pid, phase, fresh_at, updated_at) VALUES (1, 'pbx_a', 1, 'streaming', 0, 0)").run();

  /** A bridged call from D at `at`, through the tracker as vnum serve drives it; the tracker's queue drained. */
  async function bridgedCall(tracker: CallTracker, maskedAs: string, at: number) {
    const decision = decideRoute({ caller: D, dialled: maskedAs }, at, storeBridgeLookup(store.db), { defaultCountry: 'GB' });
    expect(decision.status).toBe('BRIDGE');
    tracker.routed({ uniqueId: `1700000000.${at}`, channel: 'PJSIP/carrier-1', callerId: D }, answerFor(decision)!, decision);
  }

  function setUp(withQueue: boolean, at: () => number) {
    const log = captureLog();
    const sender = heldSender();
    const queue = withQueue ? new SlideQueue({ send: sender.send, logger: log.logger }) : null;
    const sliding = new SlidingSessions({ queue, authority: withQueue ? 'vnum@10.0.0.5:5432/vnum' : null, logger: log.logger });
    const tracker = new CallTracker({ dbPath: store.path, ami: null, router: 'r:1', logger: log.logger, now: at, sliding });
    tracker.start();
    return { log, sender, queue, sliding, tracker };
  }

  it('a single box writes the push into its file (unchanged behaviour)', async () => {
    const s = createSession(store.db, { id: 'slide', first: party(A), second: party(D), now: 0, idleMs: 10 * S }).session;
    const { tracker, sliding, sender } = setUp(true, () => 8 * S);
    try {
      await bridgedCall(tracker, s.parties[0].maskedAs, 8 * S);
      await until(() => getSession(store.db, 'slide', 8 * S).endsAt === 18 * S, 3_000);
    } finally {
      await tracker.stop();
    }
    expect(sender.sent).toEqual([]);
    expect(sliding.counts).toEqual({ pushed: 0, unchanged: 0, failed: 0, skipped: 0 });
  });

  it('a replica file is never written: the push is queued for the authority, and a keep-alive is not queued again before it is due', async () => {
    const s = createSession(store.db, { id: 'slide', first: party(A), second: party(D), now: 0, idleMs: 10 * S }).session;
    claim();
    const before = JSON.stringify(store.db.prepare('SELECT * FROM session').all()) + JSON.stringify(store.db.prepare('SELECT * FROM bridge').all());
    let now = 8 * S;
    const { tracker, sender, log } = setUp(true, () => now);
    try {
      await bridgedCall(tracker, s.parties[0].maskedAs, 8 * S);
      await until(() => sender.sent.length === 1, 3_000);
      expect(sender.sent[0]).toEqual({ session: 'slide', at: 8 * S, keepAlive: false });
      await sender.answer('pushed');
      // A second call 1 s later is activity too (it moves the end to 19 s): queued.
      now = 9 * S;
      await bridgedCall(tracker, s.parties[0].maskedAs, 9 * S);
      await until(() => sender.sent.length === 2, 3_000);
      await sender.answer('pushed');
      await until(() => sender.waiting() === 0, 3_000);
      const after = JSON.stringify(store.db.prepare('SELECT * FROM session').all()) + JSON.stringify(store.db.prepare('SELECT * FROM bridge').all());
      expect(after).toBe(before);
      // The released session (released on this file only to stand for what replication brought): nothing queued.
      releaseSession(store.db, 'slide', 60 * S, 9.5 * S);
      const released = JSON.stringify(store.db.prepare('SELECT * FROM session').all());
      now = 9.8 * S;
      await bridgedCall(tracker, s.parties[0].maskedAs, 9.8 * S);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(sender.sent).toHaveLength(2);
      expect(JSON.stringify(store.db.prepare('SELECT * FROM session').all())).toBe(released);
    } finally {
      await tracker.stop();
    }
    expect(log.records().filter((r) => String(r.msg).startsWith('replica file: sliding'))).toHaveLength(1);
    expect(before).toContain('"ends_at":10000');
  });

  it('a keep-alive for a call in progress is judged on the local row and the end already sent', () => {
    createSession(store.db, { id: 'slide', first: party(A), second: party(D), now: 0, idleMs: 10 * S });
    claim();
    const log = captureLog();
    const sender = heldSender();
    const queue = new SlideQueue({ send: sender.send, logger: log.logger });
    const sliding = new SlidingSessions({ queue, authority: 'x', logger: log.logger });
    // End 10 s: at 4 s not due (14 - 10 <= 5), at 6 s due (16 s).
    expect(sliding.touch(store.db, 'slide', 4 * S, true)).toBe('none');
    expect(sliding.touch(store.db, 'slide', 6 * S, true)).toBe('queued');
    // Replication has not brought 16 s back yet: the node remembers it; the next keep-alive is due at 11 s + .
    for (let t = 6.5 * S; t <= 11 * S; t += 0.5 * S) expect(sliding.touch(store.db, 'slide', t, true)).toBe('none');
    expect(sliding.touch(store.db, 'slide', 11.5 * S, true)).toBe('queued');
    expect(getSession(store.db, 'slide', 0).endsAt).toBe(10 * S);
    void queue.close(0);
  });

  it('a push the authority did not take is forgotten: the next keep-alive offers it again', async () => {
    createSession(store.db, { id: 'slide', first: party(A), second: party(D), now: 0, idleMs: 10 * S });
    claim();
    const log = captureLog();
    const sender = heldSender();
    const queue = new SlideQueue({ send: sender.send, logger: log.logger, attempts: 1 });
    const sliding = new SlidingSessions({ queue, authority: 'x', logger: log.logger });
    expect(sliding.touch(store.db, 'slide', 6 * S, true)).toBe('queued');
    expect(sliding.touch(store.db, 'slide', 6.5 * S, true)).toBe('none');
    await sender.answer(new Error('connect ECONNREFUSED'));
    await queue.idle();
    expect(queue.counts.failed).toBe(1);
    expect(sliding.touch(store.db, 'slide', 7 * S, true)).toBe('queued');
    await sender.answer('pushed');
    await queue.idle();
  });

  it('a replica file and no authority: never written, each due push counted as skipped, one warning', async () => {
    const s = createSession(store.db, { id: 'slide', first: party(A), second: party(D), now: 0, idleMs: 10 * S }).session;
    claim();
    let now = 8 * S;
    const { tracker, sliding, log } = setUp(false, () => now);
    try {
      await bridgedCall(tracker, s.parties[0].maskedAs, 8 * S);
      await until(() => sliding.counts.skipped === 1, 3_000);
      now = 9 * S;
      await bridgedCall(tracker, s.parties[0].maskedAs, 9 * S);
      await until(() => sliding.counts.skipped === 2, 3_000);
    } finally {
      await tracker.stop();
    }
    expect(getSession(store.db, 'slide', 0).endsAt).toBe(10 * S);
    const warnings = log.records().filter((r) => String(r.msg).includes("sliding sessions do not slide from this node's calls"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, node: 'pbx_a' });
  });

  it('a file claimed by vnum replica after serve started is seen within a second', () => {
    createSession(store.db, { id: 'slide', first: party(A), second: party(D), now: 0, idleMs: 10 * S });
    const log = captureLog();
    const sliding = new SlidingSessions({ queue: null, authority: null, logger: log.logger });
    expect(sliding.replica(store.db, 0)).toBeUndefined();
    claim();
    expect(sliding.replica(store.db, 500)).toBeUndefined();
    expect(sliding.replica(store.db, 1_000)).toMatchObject({ node: 'pbx_a' });
    expect(sliding.touch(store.db, 'slide', 8 * S)).toBe('skipped');
    expect(getSession(store.db, 'slide', 0).endsAt).toBe(10 * S);
  });
});

describe('vnum serve --authority', () => {
  const store = useStore();

  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['a password in the URL', ['--authority', 'postgres://vnum:secret@10.0.0.5/vnum'], {}, /^invalid --authority "postgres:\/\/vnum:\*\*\*@10\.0\.0\.5\/vnum": a password in the URL/],
    ['not postgres', [], { VNUM_AUTHORITY: 'mysql://vnum@10.0.0.5/vnum' }, /^invalid VNUM_AUTHORITY "mysql:\/\/vnum@10\.0\.0\.5\/vnum": the scheme must be postgres:\/\//],
    ['no database', ['--authority', 'postgres://vnum@10.0.0.5'], {}, /^invalid --authority "postgres:\/\/vnum@10\.0\.0\.5": no database/],
  ];
  it.each(cases)('%s: exit 1, one line, VNUM_CONFIGURATION, no database', (_what, args, env, message) => {
    const nested = join(store.dir, 'not-yet', 'vnum.db');
    const r = vnum(['--db', nested, 'serve', '--port', '45731', ...args], env);
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ \[VNUM_CONFIGURATION\]$/);
    expect(lines[0]!.replace(/^vnum: /, '')).toMatch(message);
    expect(r.stderr).not.toContain('secret');
    expect(existsSync(join(store.dir, 'not-yet'))).toBe(false);
  });

  it('an authority nobody answers at does not stop the start (nothing connects until a push); on a single box it says pushes stay in the file', async () => {
    const serve = await startServe({ db: store.path, args: ['--authority', 'postgres://vnum@127.0.0.1:1/vnum'] });
    try {
      expect(serve.lines().some((l) => l.includes('--authority is for a cluster node: this file is not (yet) a replica'))).toBe(true);
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  });
});
