/**
 * A party's real number must never become a pool number, nor a pool number a
 * party, whatever two processes do at once (docs/reliability.md, "Parties and
 * the pool"). Real processes (the built CLI) on one real file:
 *
 * - interleaved on purpose: this process holds the write lock while the CLI
 *   starts, has read the database and waits for the lock; then this process
 *   commits the other side (a session with that number as a party, or that
 *   number added to the pool). The CLI's check must see it: its check and its
 *   write are one IMMEDIATE transaction. Without that, `pool add` checked
 *   before taking the lock and added a party's number (exit 0).
 * - at random, as the issue found it: `session create` and `pool add` of the
 *   same number started together, many times: never both succeed, and no
 *   pool number is ever a party.
 */
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addToPool } from '../../src/pool/pool.js';
import { createSession } from '../../src/session/sessions.js';
import { openDb, type Db } from '../../src/store/db.js';
import { startVnum, type CliResult } from '../support/cli.js';
import { londonDids, mobile, party, seedPool } from '../support/store.js';
import { sleep } from '../support/wait.js';

/** Resolves once process `pid` holds `path` open: it has opened the database. */
async function holdsOpen(pid: number, path: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      if (readdirSync(`/proc/${pid}/fd`).some((fd) => safeReadlink(`/proc/${pid}/fd/${fd}`) === path)) return;
    } catch {
      // not started yet, or gone
    }
    await sleep(5);
  }
  throw new Error(`process ${pid} never opened ${path}`);
}

function safeReadlink(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/** Pool numbers that are some session's party: must always be empty. */
function partiesInPool(db: Db): string[] {
  return db
    .prepare(
      `SELECT number FROM pool_number WHERE number IN (SELECT first_party FROM session UNION SELECT second_party FROM session)`,
    )
    .pluck()
    .all() as string[];
}

const ENV = { VNUM_DEFAULT_COUNTRY: 'GB' };

let dir: string;
let path: string;
let db: Db;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-rel-race-'));
  path = join(dir, 'vnum.db');
  db = openDb(path);
  seedPool(db, londonDids(2));
});
afterEach(() => {
  if (db.open) {
    if (db.inTransaction) db.exec('ROLLBACK');
    db.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Holds the write lock while `args` starts and reaches the database, then
 * runs `meanwhile` in the same transaction and commits; the CLI then gets the
 * lock. The CLI has read the database before this commit, so only a check
 * made again under the lock sees what `meanwhile` wrote.
 */
async function interleave(args: string[], meanwhile: () => void): Promise<CliResult> {
  db.exec('BEGIN IMMEDIATE');
  const cli = startVnum(['--db', path, ...args], ENV);
  try {
    await holdsOpen(cli.pid, path);
    // Long enough for it to read (and, before the fix, check) and then wait for
    // the lock; well inside its 5 s busy timeout.
    await sleep(1_000);
    meanwhile();
    db.exec('COMMIT');
  } catch (e) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw e;
  }
  return cli.done;
}

describe('a party and a pool number, written at once by two processes', () => {
  const Q = mobile(1);
  const X = mobile(2);

  it('pool add: a number that became a party while it waited for the lock is refused', async () => {
    const added = await interleave(['pool', 'add', Q], () => createSession(db, { id: 'r1', first: party(Q), second: party(X), now: Date.now() }));
    expect(added.stderr).toMatch(/^vnum: \+\*{8}0001 is a party's real number in a session; it cannot be a virtual number \[VNUM_POOL_CONFLICT\]\n$/);
    expect(added.code).toBe(1);
    expect(partiesInPool(db)).toEqual([]);
  });

  it('pool import: the same, from a provider export', async () => {
    const csv = join(dir, 'dids.csv');
    writeFileSync(csv, `number,country\n${londonDids(1, 10)[0]},GB\n${Q},GB\n`);
    const imported = await interleave(['pool', 'import', csv], () =>
      createSession(db, { id: 'r1', first: party(Q), second: party(X), now: Date.now() }),
    );
    expect(imported.stderr).toMatch(/line 3: \+\*{8}0001 is a party's real number .*\[VNUM_POOL_CONFLICT\]\n$/);
    expect(imported.code).toBe(1);
    // Nothing of the file was written.
    expect(db.prepare('SELECT count(*) FROM pool_number').pluck().get()).toBe(2);
    expect(partiesInPool(db)).toEqual([]);
  });

  it('session create: a party that became a pool number while it waited for the lock is refused', async () => {
    const created = await interleave(['session', 'create', 'r1', Q, X], () => addToPool(db, [{ number: Q }], { now: Date.now() }));
    expect(created.stderr).toMatch(/\+447911000001 is a virtual number in the pool, not a party's real number \[VNUM_POOL_CONFLICT\]\n$/);
    expect(created.code).toBe(1);
    expect(db.prepare('SELECT count(*) FROM session').pluck().get()).toBe(0);
    expect(partiesInPool(db)).toEqual([]);
  });

  it('started together many times (session create & pool add of the same number): never both, never a party in the pool', async () => {
    const PAIRS = 24;
    let both = 0;
    let sessions = 0;
    let added = 0;
    // Four pairs at a time: enough overlap, within two shared cores.
    for (let batch = 0; batch < PAIRS; batch += 4) {
      const runs = Array.from({ length: 4 }, (_, i) => {
        const n = batch + i;
        const q = mobile(100 + n);
        const create = startVnum(['--db', path, 'session', 'create', `r${n}`, q, mobile(500 + n)], ENV);
        const add = startVnum(['--db', path, 'pool', 'add', q], ENV);
        return Promise.all([create.done, add.done]);
      });
      for (const [create, add] of await Promise.all(runs)) {
        for (const r of [create, add]) expect(r.stderr, r.stderr).toMatch(/^$|\[VNUM_POOL_CONFLICT\]\n$/);
        if (create.code === 0) sessions++;
        if (add.code === 0) added++;
        if (create.code === 0 && add.code === 0) both++;
      }
    }
    console.log(`race: ${PAIRS} pairs, ${sessions} sessions created, ${added} numbers added, ${both} both`);
    expect(both).toBe(0);
    expect(sessions + added).toBe(PAIRS);
    expect(partiesInPool(db)).toEqual([]);
  }, 120_000);
});
