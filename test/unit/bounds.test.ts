/**
 * Durations and dates (README, "Bounds"): every duration a command takes is
 * bounded to what vnum can store and print, and refused as the user's error
 * before anything is written; every read shows whatever time a row holds,
 * including one an older vnum wrote out of range, instead of failing.
 */
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/duration.js';
import { VnumError } from '../../src/errors.js';
import { createSession, MAX_GRACE_MS, MAX_TTL_MS, releaseSession } from '../../src/session/sessions.js';
import { isoDateTime, MAX_DATE_MS } from '../../src/time.js';
import { useCliDatabase, type CliResult } from '../support/cli.js';
import { londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';

const A = '+447911000001';
const D = '+447911000002';
const DAY = 86_400_000;

function expectRefused(result: CliResult, message: RegExp): void {
  expect(result.stdout).toBe('');
  expect(result.stderr).toMatch(/^vnum: [^\n]* \[VNUM_INVALID_ARGUMENT\]\n$/);
  expect(result.stderr).toMatch(message);
  expect(result.code).toBe(1);
}

describe('durations', () => {
  it('parse within their bounds and say the bounds when outside', () => {
    expect(parseDuration('365d', 'TTL', { min: 1, max: MAX_TTL_MS })).toBe(MAX_TTL_MS);
    expect(() => parseDuration('366d', 'TTL', { min: 1, max: MAX_TTL_MS })).toThrow('invalid TTL "366d": from 1ms to 365d');
    expect(() => parseDuration('0s', 'TTL', { min: 1, max: MAX_TTL_MS })).toThrow('from 1ms to 365d');
    // Nothing anywhere goes beyond ten years, whatever a caller asks for.
    expect(() => parseDuration('999999999d')).toThrow('at most 3650d');
    expect(() => parseDuration('999999999d', 'x', { max: Number.MAX_SAFE_INTEGER })).toThrow('at most 3650d');
    expect([formatDuration(0), formatDuration(90_000), formatDuration(1_500), formatDuration(30 * DAY)]).toEqual(['0s', '90s', '1500ms', '30d']);
  });

  it('are checked by the domain too (for every face, not only the CLI)', () => {
    const store = tempDb();
    try {
      seedPool(store.db, londonDids(2));
      for (const ttlMs of [0, -1, 1.5, MAX_TTL_MS + 1, Number.POSITIVE_INFINITY]) {
        expect(() => createSession(store.db, { id: 'o1', first: party(A), second: party(D), ttlMs, now: 0 })).toThrow(VnumError);
      }
      createSession(store.db, { id: 'o1', first: party(A), second: party(D), ttlMs: MAX_TTL_MS, now: 0 });
      for (const grace of [-1, MAX_GRACE_MS + 1, Number.NaN]) {
        expect(() => releaseSession(store.db, 'o1', grace, 1)).toThrow(/grace must be from zero to 30d/);
      }
      // A clock so far off that the end could not be stored.
      expect(() => createSession(store.db, { id: 'o2', first: party(A), second: party(mobile(9)), ttlMs: DAY, now: MAX_DATE_MS })).toThrow(
        /beyond the dates vnum can store/,
      );
      expect(() => releaseSession(store.db, 'o1', DAY, MAX_DATE_MS)).toThrow(/beyond the dates vnum can store/);
      expect(store.db.prepare('SELECT count(*) FROM session').pluck().get()).toBe(1);
    } finally {
      store.cleanup();
    }
  });
});

describe('the CLI refuses an unrepresentable duration or date before writing anything', () => {
  const { run } = useCliDatabase('vnum-bounds-');
  beforeEach(() => expect(run('pool', 'add', '+442079460001', '+442079460002').code).toBe(0));
  const sessions = () => JSON.parse(run('session', 'list', '--json').stdout) as Array<{ id: string; state: string; releasedAt: string | null }>;

  it('session create --ttl: 99999999d (once committed, then "Invalid time value"), 366d, 0s', () => {
    for (const ttl of ['99999999d', '999999999d', '366d', '8761h', '0s']) {
      expectRefused(run('session', 'create', 'x', A, D, '--ttl', ttl), new RegExp(`invalid TTL "${ttl}": from 1ms to 365d`));
    }
    expect(sessions()).toEqual([]);
    const created = JSON.parse(run('session', 'create', 'x', A, D, '--ttl', '365d', '--json').stdout);
    expect(Date.parse(created.expiresAt) - Date.parse(created.createdAt)).toBe(365 * DAY);
  });

  it('session release --grace and --wait: refused before the release is written', () => {
    run('session', 'create', 'x', A, D);
    expectRefused(run('session', 'release', 'x', '--grace', '99999999d'), /invalid grace "99999999d": at most 30d/);
    expectRefused(run('session', 'release', 'x', '--grace', '31d'), /at most 30d/);
    expectRefused(run('session', 'release', 'x', '--hangup', '--wait', '25d'), /invalid wait "25d": at most 10m/);
    expect(sessions()).toMatchObject([{ id: 'x', state: 'active', releasedAt: null }]);
    expect(run('session', 'release', 'x', '--grace', '30d').code).toBe(0);
  });

  it('calls --since: a duration back to 1970 at most, a real calendar date from 1970 on', () => {
    for (const since of ['999999999d', '3651d', '2026-02-30', '2026-13-01', '2026-01-01T24:00Z', '1969-12-31', '0000-01-01']) {
      expectRefused(run('calls', '--since', since), /invalid --since/);
    }
    for (const since of ['3650d', '2026-02-28', '1970-01-01T00:00:00Z', '2026-11-25 09:00']) {
      expect(run('calls', '--since', since).code, since).toBe(0);
    }
  });

  it('health --timeout: at most a minute (Node would fire a longer timer after 1 ms)', () => {
    // A setting of vnum health, judged like vnum serve's (src/cli/settings.ts: boundedDuration over
    // SETTING_LIMITS.healthTimeoutMs): VNUM_CONFIGURATION, 100ms to 60s.
    for (const timeout of ['25d', '0s', '61s']) {
      const result = run('health', '--timeout', timeout);
      expect(result.stdout).toBe('');
      expect(result.stderr).toBe(`vnum: invalid --timeout "${timeout}": from 100ms to 60s [VNUM_CONFIGURATION]\n`);
      expect(result.code).toBe(1);
    }
  });
});

describe('reads show any stored time, even one out of range an older vnum wrote', () => {
  const cli = useCliDatabase('vnum-bounds-');
  const run = cli.run;

  it('session list, show, stats, route, calls and release on rows with dates beyond any calendar', () => {
    run('pool', 'add', '+442079460001', '+442079460002');
    run('session', 'create', 'old', A, D);
    run('session', 'create', 'huge', '+447911000003', '+447911000004');
    const masked = JSON.parse(run('session', 'show', 'old', '--json').stdout).parties[1].maskedAs as string;
    // What `session create old … --ttl 99999999d` committed before this fix, and worse.
    const raw = new Database(cli.db);
    const bad = Date.now() + 99_999_999 * DAY;
    raw.prepare("UPDATE session SET expires_at = ?, ends_at = ? WHERE id = 'old'").run(bad, bad);
    raw.prepare("UPDATE bridge SET ends_at = ? WHERE sid = (SELECT sid FROM session WHERE id = 'old')").run(bad);
    raw.prepare("UPDATE session SET created_at = ?, expires_at = 9223372036854775807, ends_at = 9223372036854775807 WHERE id = 'huge'").run(-9e15);
    raw.prepare(
      "INSERT INTO call (uniqueid, channel, session_id, caller, started_at, answered_at, ended_at) VALUES ('1.1', 'PJSIP/x-1', 'old', 'first', ?, ?, 1e300)",
    ).run(bad, bad);
    raw.close();

    const list = run('session', 'list');
    expect(list.stderr).toBe('');
    expect(list.stdout).toMatch(/old\s+active .* \+2758\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ/);
    const shown = JSON.parse(run('session', 'show', 'old', '--json').stdout);
    expect(shown).toMatchObject({ state: 'active', expiresAt: expect.stringMatching(/^\+2758\d\d-/) });
    const huge = JSON.parse(run('session', 'show', 'huge', '--json').stdout);
    expect(huge.createdAt).toMatch(/^-2832\d\d-/);
    expect(huge.expiresAt).toMatch(/^\+292278\d{3}-/);
    expect(run('session', 'show', 'huge').code).toBe(0);
    expect(JSON.parse(run('stats', '--json').stdout).sessions.active).toBe(2);
    expect(JSON.parse(run('route', A, masked, '--json').stdout)).toMatchObject({ status: 'BRIDGE', session: 'old' });
    const calls = run('calls', '--json');
    expect(calls.code, calls.stderr).toBe(0);
    expect(JSON.parse(calls.stdout)[0]).toMatchObject({ startedAt: expect.stringMatching(/^\+2758/), endedAt: 'invalid time (1e+300)' });
    expect(run('calls').code).toBe(0);
    // Releasing it puts it back on the calendar.
    expect(run('session', 'release', 'old', '--grace', '0s').stdout).toBe('session old ended\n');
    expect(JSON.parse(run('route', A, masked, '--json').stdout).status).toBe('ENDED');
  }, 90_000);

  it('isoDateTime is toISOString wherever a Date exists, and goes on past it', () => {
    fc.assert(
      fc.property(fc.integer({ min: -MAX_DATE_MS, max: MAX_DATE_MS }), (ms) => {
        expect(isoDateTime(ms)).toBe(new Date(ms).toISOString());
      }),
      { numRuns: 2_000 },
    );
    // The algorithm itself, checked where Date can check it.
    expect(new Date(MAX_DATE_MS).toISOString()).toBe('+275760-09-13T00:00:00.000Z');
    expect(isoDateTime(MAX_DATE_MS + DAY + 1)).toBe('+275760-09-14T00:00:00.001Z');
    expect(isoDateTime(-MAX_DATE_MS - DAY)).toBe('-271821-04-19T00:00:00.000Z');
    expect(isoDateTime(9223372036854775807)).toBe('+292278994-08-17T07:12:55.808Z'); // the nearest double to 2^63 - 1
    expect(isoDateTime(Number.POSITIVE_INFINITY)).toBe('invalid time (Infinity)');
  });
});
