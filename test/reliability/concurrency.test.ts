/**
 * Four processes create and release sessions on one
 * database file while `vnum serve` routes calls from it at load. Afterwards:
 * no invariant violation, no error reached any caller (no SQLITE_BUSY, no
 * ERROR answer), every acknowledged create and release is in the store, and
 * every BRIDGE the router gave matches the session it named.
 *
 * Sizes: VNUM_RELIABILITY_SESSIONS sessions per writer (default 10,000).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDb, type Db } from '../../src/store/db.js';
import { getSession } from '../../src/session/sessions.js';
import { invariantViolations, londonDids, seedPool } from '../support/store.js';
import { startServe, type Serve } from '../support/serve.js';
import { routeCall, sizeFromEnv, type Answer } from './lib.js';

const WRITERS = 4;
const SESSIONS = sizeFromEnv('VNUM_RELIABILITY_SESSIONS', 10_000);
const PARTIES = 400;
const POOL = 16;
/** Sessions each writer keeps open before releasing the oldest. */
const WINDOW = 40;
/** Calls in flight at once against the router. */
const CALLERS = 8;
const WORKER = new URL('./workers/churn.mjs', import.meta.url).pathname;

interface Created {
  id: string;
  first: string;
  second: string;
  firstMasked: string;
  secondMasked: string;
}

interface Routed {
  caller: string;
  dialled: string;
  /** The session the call was about, or undefined for a stranger. */
  session: Created | undefined;
  answer: Answer | undefined;
  received: string;
}

let dir: string;
let dbPath: string;
let db: Db;
let serve: Serve | undefined;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-rel-concurrency-'));
  dbPath = join(dir, 'vnum.db');
  db = openDb(dbPath);
  seedPool(db, londonDids(POOL));
});
afterAll(async () => {
  await serve?.stop();
  if (db?.open) db.close();
  rmSync(dir, { recursive: true, force: true });
});

it(`${WRITERS} writers x ${SESSIONS} sessions created and released while vnum serve routes at load: no violation, no error, nothing lost`, async () => {
  serve = await startServe({ db: dbPath });
  const started = performance.now();

  const created = new Map<string, Created>();
  const released = new Set<string>();
  const exhausted: string[] = [];
  const errors: string[] = [];
  /** Sessions created and not yet seen released: what the callers pick from. */
  const open: Created[] = [];
  const openAt = new Map<string, number>();

  const writers = Array.from({ length: WRITERS }, (_, w) => {
    const child = spawn(process.execPath, [WORKER, dbPath, String(w), String(SESSIONS), String(PARTIES), String(WINDOW)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const [kind, ...rest] = line.split(' ');
      if (kind === 'C') {
        const [id, first, second, firstMasked, secondMasked] = rest as [string, string, string, string, string];
        const session = { id, first, second, firstMasked, secondMasked };
        created.set(id, session);
        openAt.set(id, open.push(session) - 1);
      } else if (kind === 'R') {
        released.add(rest[0]!);
        const at = openAt.get(rest[0]!);
        if (at !== undefined) {
          // Swap-remove from the open list.
          const last = open.pop()!;
          if (last.id !== rest[0]) {
            open[at] = last;
            openAt.set(last.id, at);
          }
          openAt.delete(rest[0]!);
        }
      } else if (kind === 'X') {
        exhausted.push(rest[0]!);
      } else if (kind !== 'DONE') {
        errors.push(`writer ${w}: ${line}`);
      }
    });
    return new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  });

  let writing = true;
  const allWritten = Promise.all(writers).finally(() => {
    writing = false;
  });

  const routed: Routed[] = [];
  let pick = 0;
  const caller = async (): Promise<void> => {
    while (writing) {
      pick++;
      const session = open.length > 0 && pick % 5 !== 0 ? open[(pick * 7919) % open.length] : undefined;
      let from: string;
      let to: string;
      if (session === undefined) {
        // A stranger (in no session) calling a pool number.
        from = `+447400${String(900_000 + (pick % 1000)).padStart(6, "0")}`;
        to = londonDids(POOL)[pick % POOL]!;
      } else if (pick % 2 === 0) {
        from = session.first;
        to = session.secondMasked;
      } else {
        from = session.second;
        to = session.firstMasked;
      }
      const { answer, raw } = await routeCall(serve!.port, from, to);
      routed.push({ caller: from, dialled: to, session, answer, received: raw.received });
    }
  };
  await Promise.all(Array.from({ length: CALLERS }, caller));
  const outcomes = await allWritten;
  const seconds = (performance.now() - started) / 1000;

  // No writer failed, and none saw an error other than an honest "pool exhausted".
  expect(outcomes.map((o) => o.code), outcomes.map((o) => o.stderr).join('\n')).toEqual(Array(WRITERS).fill(0));
  expect(errors).toEqual([]);
  expect(created.size + exhausted.length).toBe(WRITERS * SESSIONS);

  // Every call got exactly one well-formed answer, never ERROR.
  const malformed = routed.filter((r) => r.answer === undefined);
  expect(malformed.map((r) => JSON.stringify(r.received)).slice(0, 5)).toEqual([]);
  const statuses: Record<string, number> = {};
  for (const r of routed) statuses[r.answer!.status] = (statuses[r.answer!.status] ?? 0) + 1;
  expect(statuses.ERROR ?? 0).toBe(0);
  expect(statuses.INVALID ?? 0).toBe(0);

  const now = Date.now();
  // Calls about a session: never NO_SESSION (the pair had been lent), ENDED only once it was released.
  const aboutSession = routed.filter((r) => r.session !== undefined);
  expect(aboutSession.filter((r) => r.answer!.status === 'NO_SESSION')).toEqual([]);
  expect(aboutSession.filter((r) => r.answer!.status === 'ENDED' && !released.has(r.session!.id))).toEqual([]);
  // Strangers: never anything but NO_SESSION.
  expect(routed.filter((r) => r.session === undefined && r.answer!.status !== 'NO_SESSION')).toEqual([]);
  // Every BRIDGE is exactly what the session it names says: the other party, presented as the caller's mask.
  const wrongBridges = routed.filter((r) => {
    if (r.answer!.status !== 'BRIDGE') return false;
    const s = getSession(db, r.answer!.session, now);
    const [p1, p2] = s.parties;
    const ok =
      (r.caller === p1.number && r.dialled === p2.maskedAs && r.answer!.target === p2.number && r.answer!.cli === p1.maskedAs) ||
      (r.caller === p2.number && r.dialled === p1.maskedAs && r.answer!.target === p1.number && r.answer!.cli === p2.maskedAs);
    return !ok;
  });
  expect(wrongBridges).toEqual([]);
  const bridgedOwn = aboutSession.filter((r) => r.answer!.status === 'BRIDGE' && r.answer!.session === r.session!.id).length;

  // The store afterwards: consistent, the invariant holds, nothing acknowledged is missing.
  expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
  expect(invariantViolations(db, now)).toEqual([]);
  const missing: string[] = [];
  const mismatched: string[] = [];
  for (const c of created.values()) {
    let s;
    try {
      s = getSession(db, c.id, now);
    } catch {
      missing.push(c.id);
      continue;
    }
    const [p1, p2] = s.parties;
    if (p1.number !== c.first || p2.number !== c.second || p1.maskedAs !== c.firstMasked || p2.maskedAs !== c.secondMasked) {
      mismatched.push(c.id);
    }
    if (released.has(c.id) && s.releasedAt === null) mismatched.push(`${c.id} (release lost)`);
  }
  expect(missing).toEqual([]);
  expect(mismatched).toEqual([]);
  expect(released.size).toBe(created.size);
  expect(serve!.alive()).toBe(true);

  console.log(
    `concurrency: ${WRITERS} writers x ${SESSIONS} sessions: ${created.size} created, ${released.size} released, ` +
      `${exhausted.length} refused as pool exhausted; ${routed.length} calls routed meanwhile (${JSON.stringify(statuses)}, ` +
      `${bridgedOwn} bridged to the session they were placed for); ${seconds.toFixed(1)} s`,
  );
}, 600_000);
