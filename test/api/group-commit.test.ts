/**
 * The SQLite authority commits creates that arrive together in one
 * transaction (src/authority/sqlite.ts): each create still sees the ones
 * before it, one that fails is undone alone, and a promise settles only
 * once its group is on disk.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { MAX_CREATES_PER_COMMIT, openSqliteAuthority } from '../../src/authority/sqlite.js';
import type { Authority } from '../../src/authority/authority.js';
import { isVnumError } from '../../src/errors.js';
import { invariantViolations } from '../../src/session/invariant.js';
import { partyInput } from '../../src/session/sessions.js';
import { openDb } from '../../src/store/db.js';

let dir: string;
let path: string;
let authority: Authority;
const now = Date.parse('2026-11-30T12:00:00Z');

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-group-commit-'));
  path = join(dir, 'vnum.db');
  authority = openSqliteAuthority(path);
  await authority.addToPool(
    ['+442079460001', '+442079460002', '+442079460003'].map((number) => ({ number })),
    { defaultCountry: undefined, now, rule: 'operator' },
  );
});
afterEach(async () => {
  await authority.close();
  rmSync(dir, { recursive: true, force: true });
});

const create = (id: string, first: string, second: string) =>
  authority.createSession({ id, first: partyInput(first, undefined, undefined), second: partyInput(second, undefined, undefined), now });

/** Settle every promise; the outcome of each, in order. */
const outcomes = (promises: Promise<unknown>[]) =>
  Promise.allSettled(promises).then((all) => all.map((o) => (o.status === 'fulfilled' ? 'ok' : isVnumError(o.reason) ? o.reason.code : String(o.reason))));

it('creates sent in one turn commit in one transaction; each sees the ones before it, and a failure is undone alone', async () => {
  const agent = '+447400123456';
  const results = await outcomes([
    create('a', '+447911000001', agent),
    create('a', '+447911000002', agent), // same id, other parties: a conflict with the create just before it in the group
    create('b', '+447911000003', agent),
    create('c', '+447911000004', agent),
    create('d', '+447911000005', agent), // the agent's fourth live session: three numbers are not enough
    create('e', '+447911000006', '+447400999999'),
  ]);
  expect(results).toEqual(['ok', 'VNUM_SESSION_CONFLICT', 'ok', 'ok', 'VNUM_POOL_EXHAUSTED', 'ok']);
  expect(authority.commitStats!()).toEqual({ creates: 6, transactions: 1 });

  // on disk, from another connection: the four that succeeded, nothing of the two that failed, the invariant held
  const db = openDb(path, { mode: 'read' });
  const ids = db.prepare<[], { id: string }>('SELECT id FROM session ORDER BY id').all().map((r) => r.id);
  expect(ids).toEqual(['a', 'b', 'c', 'e']);
  expect(invariantViolations(db, now)).toEqual([]);
  // the agent dials three different numbers: b and c saw a (and each other) inside the same transaction
  const masked = db
    .prepare<[], { dialled: string }>("SELECT dialled FROM bridge WHERE caller = '+447400123456'")
    .all()
    .map((r) => r.dialled);
  expect(new Set(masked).size).toBe(3);
  db.close();

  // a retry of a committed create is the same request: created false, in a group of its own
  expect((await create('a', '+447911000001', agent)).created).toBe(false);
  expect(authority.commitStats!()).toEqual({ creates: 7, transactions: 2 });
});

it(`a burst larger than a group is split into groups of at most ${MAX_CREATES_PER_COMMIT}`, async () => {
  const count = MAX_CREATES_PER_COMMIT * 2 + 5;
  const results = await outcomes(Array.from({ length: count }, (_, i) => create(`s-${i}`, `+44791100${String(i).padStart(4, '0')}`, `+44740000${String(i).padStart(4, '0')}`)));
  expect(results.every((r) => r === 'ok')).toBe(true);
  expect(authority.commitStats!()).toEqual({ creates: count, transactions: 3 });
});
