/**
 * The idempotency rule of `session create` (README, "Retries"), as the
 * hosted APIs keep it: the same id and the same request get the same answer;
 * another request under that id is a conflict; a released or ended session
 * is never reopened, and a retry of it is not a success.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { addToPool } from '../../src/pool/pool.js';
import { createSession, releaseSession, type CreateSessionInput } from '../../src/session/sessions.js';
import { openDb } from '../../src/store/db.js';
import { useCliDatabase } from '../support/cli.js';
import { londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';
import { errorOf } from '../support/errors.js';

const A = mobile(1);
const D = mobile(2);
const HOUR = 3_600_000;
const [N1, N2, N3] = londonDids(3) as [string, string, string];

describe('session create under an id that exists (domain)', () => {
  let store: ReturnType<typeof tempDb>;
  beforeEach(() => {
    store = tempDb();
    seedPool(store.db, londonDids(3));
  });
  afterEach(() => store.cleanup());
  const create = (input: Partial<CreateSessionInput>) =>
    createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 0, ...input });
  const sessionRows = () => store.db.prepare('SELECT count(*) FROM session').pluck().get();

  it('the same request, a minute later: the same session, created false', () => {
    const first = create({ ttlMs: 2 * HOUR });
    const again = create({ ttlMs: 2 * HOUR, now: 60_000 });
    // The PINs are shown once, to the create that issued them: the store keeps only their digests.
    const shownOnce = { ...first.session, parties: first.session.parties.map(({ pin: _pin, ...p }) => p) };
    expect(again).toEqual({ session: shownOnce, created: false });
    expect(sessionRows()).toBe(1);
  });

  it('a different TTL, another party, the parties swapped: a conflict saying what differs, never the other numbers', () => {
    create({ ttlMs: 2 * HOUR });
    const cases: Array<[Partial<CreateSessionInput>, string[], RegExp]> = [
      [{ ttlMs: HOUR }, ['ttl'], /already exists with another TTL \(2h\)/],
      [{}, ['ttl'], /another TTL \(2h\)/],
      [{ ttlMs: 2 * HOUR, second: party(mobile(3)) }, ['parties'], /already exists with other parties/],
      [{ ttlMs: 2 * HOUR, first: party(D), second: party(A) }, ['party order'], /these parties in the other order/],
      [{ ttlMs: HOUR, second: party(mobile(3)) }, ['parties', 'ttl'], /other parties, another TTL/],
    ];
    for (const [input, differs, message] of cases) {
      const error = errorOf(() => create(input));
      expect(error).toMatchObject({ code: ErrorCode.SessionConflict, details: { differs } });
      expect(error.message).toMatch(message);
      expect(error.message).not.toContain(D);
    }
    expect(sessionRows()).toBe(1);
  });

  it('a masked number named on the retry must be the one lent; one named only on the first create need not be repeated', () => {
    const first = create({ first: party(A, N3) });
    expect(first.session.parties[0].maskedAs).toBe(N3);
    expect(create({}).created).toBe(false);
    expect(create({ first: party(A, N3) }).created).toBe(false);
    const lentToSecond = first.session.parties[1].maskedAs;
    expect(create({ second: party(D, lentToSecond) }).created).toBe(false);
    expect(errorOf(() => create({ first: party(A, N1) }))).toMatchObject({ code: ErrorCode.SessionConflict, details: { differs: ['firstMaskedAs'] } });
    const other = lentToSecond === N2 ? N1 : N2;
    expect(errorOf(() => create({ second: party(D, other) }))).toMatchObject({ details: { differs: ['secondMaskedAs'] } });
  });

  it('released (still in grace), ended by release, ended by its TTL: never reopened, refused as SessionEnded with the session', () => {
    create({});
    releaseSession(store.db, 'o1', HOUR, 10);
    const inGrace = errorOf(() => create({ now: 20 }));
    expect(inGrace.code).toBe(ErrorCode.SessionEnded);
    expect(inGrace.message).toBe(
      'session "o1" was released at 1970-01-01T00:00:00.010Z (calls connect until 1970-01-01T01:00:00.010Z): a session is never reopened; use a new id for a new session',
    );
    expect(inGrace.details).toMatchObject({ session: { id: 'o1', state: 'grace' } });
    expect(errorOf(() => create({ now: 2 * HOUR })).details).toMatchObject({ session: { state: 'ended' } });

    create({ id: 'o2', first: party(mobile(5)), second: party(mobile(6)), ttlMs: HOUR });
    const expired = errorOf(() => create({ id: 'o2', first: party(mobile(5)), second: party(mobile(6)), ttlMs: HOUR, now: HOUR }));
    expect(expired.message).toBe('session "o2" ended at 1970-01-01T01:00:00.000Z: a session is never reopened; use a new id for a new session');
    // A different request under an ended session's id is a conflict first: that is the caller's bug.
    expect(errorOf(() => create({ id: 'o2', ttlMs: 2 * HOUR, now: HOUR })).code).toBe(ErrorCode.SessionConflict);
    expect(sessionRows()).toBe(2);
  });
});

describe('session create retries (built CLI): the exit code and the JSON say what happened', () => {
  const { run } = useCliDatabase('vnum-retry-');
  beforeEach(() => expect(run('pool', 'add', N1, N2).code).toBe(0));

  it('same request: exit 0, "created": false; another TTL or masked number: VNUM_SESSION_CONFLICT, exit 1', () => {
    const first = JSON.parse(run('session', 'create', 'r1', A, D, '--ttl', '2h', '--json').stdout);
    const retry = run('session', 'create', 'r1', A, D, '--ttl', '2h', '--json');
    expect(retry.code).toBe(0);
    // The PINs were shown to the first create only.
    expect(first.parties.map((p: { pin?: string }) => p.pin)).toEqual([expect.stringMatching(/^\d{6,12}$/), expect.stringMatching(/^\d{6,12}$/)]);
    const parties = first.parties.map(({ pin: _pin, ...p }: { pin?: string }) => p);
    expect(JSON.parse(retry.stdout)).toEqual({ ...first, parties, created: false });
    expect(run('session', 'create', 'r1', A, D, '--ttl', '2h').stdout).toMatch(/^session r1 already exists for this request: unchanged\n/);
    for (const args of [['--ttl', '3h'], [], ['--ttl', '2h', '--first-masked-as', first.parties[0].maskedAs === N1 ? N2 : N1]]) {
      const conflict = run('session', 'create', 'r1', A, D, ...args, '--json');
      expect(conflict).toMatchObject({ code: 1, stdout: '' });
      expect(conflict.stderr).toMatch(/^vnum: session "r1" already exists with [^\n]* \[VNUM_SESSION_CONFLICT\]\n$/);
    }
  });

  it('a retry after release: exit 1, VNUM_SESSION_ENDED, and JSON with the ended session and the error', () => {
    run('session', 'create', 'r1', A, D);
    run('session', 'release', 'r1', '--grace', '0s');
    const retry = run('session', 'create', 'r1', A, D, '--json');
    expect(retry.code).toBe(1);
    expect(retry.stderr).toMatch(/^vnum: session "r1" was released at [^\n]*: a session is never reopened; use a new id for a new session \[VNUM_SESSION_ENDED\]\n$/);
    expect(JSON.parse(retry.stdout)).toMatchObject({
      id: 'r1',
      state: 'ended',
      created: false,
      error: { code: 'VNUM_SESSION_ENDED', message: expect.stringMatching(/never reopened/) },
    });
    const plain = run('session', 'create', 'r1', A, D);
    expect(plain).toMatchObject({ code: 1, stdout: '' });
    // Nothing was reopened.
    expect(JSON.parse(run('session', 'show', 'r1', '--json').stdout).state).toBe('ended');
  });
});

it('a pool number added through another connection is seen by a create on a connection that cached the pool', () => {
  const store = tempDb();
  try {
    seedPool(store.db, londonDids(2));
    createSession(store.db, { id: 'warm', first: party(mobile(7)), second: party(mobile(8)), now: 0 });
    const other = openDb(store.path);
    addToPool(other, [{ number: A }], { now: 1 });
    other.close();
    expect(errorOf(() => createSession(store.db, { id: 'o1', first: party(A), second: party(D), now: 2 }))).toMatchObject({
      code: ErrorCode.PoolConflict,
      message: `${A} is a virtual number in the pool, not a party's real number`,
    });
  } finally {
    store.cleanup();
  }
});
