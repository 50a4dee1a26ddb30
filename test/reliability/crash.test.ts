/**
 * A process creating and releasing sessions is killed with
 * SIGKILL at random moments. After every kill the store is whole: integrity
 * check ok, no half-created session (every live session routes both ways to
 * itself; no bridge without its session), the invariant holds, and every
 * create and release the process acknowledged before it died is there.
 *
 * Trials run in groups on one file (the first of each group starts from no
 * file at all), so a file also survives repeated crashes in a row.
 * Sizes: VNUM_RELIABILITY_CRASH_TRIALS (default 100).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDb, type Db } from '../../src/store/db.js';
import { getSession, type Session } from '../../src/session/sessions.js';
import { decideRoute } from '../../src/routing/decide.js';
import { storeBridgeLookup } from '../../src/routing/lookup.js';
import { invariantViolations } from '../support/store.js';
import { prng, sizeFromEnv } from './lib.js';

const TRIALS = sizeFromEnv('VNUM_RELIABILITY_CRASH_TRIALS', 100);
const TRIALS_PER_FILE = 10;
const POOL = 30;
const PARTIES = 200;
const WORKER = new URL('./workers/crash.mjs', import.meta.url).pathname;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-rel-crash-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Acknowledged {
  ready: boolean;
  /** ms from spawn to READY (store open, pool loaded) */
  readyAfterMs: number | undefined;
  created: Map<string, string[]>;
  released: Set<string>;
}

/** Run the worker and SIGKILL it at `killAfterMs` after spawn, or `killAfterMs` after it reports READY. */
function runAndKill(path: string, trial: number, killAfterMs: number, from: 'spawn' | 'ready'): Promise<Acknowledged> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, path, String(trial), String(POOL), String(PARTIES)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const spawnedAt = performance.now();
    const ack: Acknowledged = { ready: false, readyAfterMs: undefined, created: new Map(), released: new Set() };
    let buffered = '';
    let stderr = '';
    let killed = false;
    const kill = (): void => {
      killed = true;
      child.kill('SIGKILL');
    };
    if (from === 'spawn') setTimeout(kill, killAfterMs);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const [kind, id, ...rest] = buffered.slice(0, nl).split(' ');
        buffered = buffered.slice(nl + 1);
        if (kind === 'READY') {
          ack.ready = true;
          ack.readyAfterMs = performance.now() - spawnedAt;
          if (from === 'ready') setTimeout(kill, killAfterMs);
        } else if (kind === 'C') ack.created.set(id!, rest);
        else if (kind === 'R') ack.released.add(id!);
      }
    });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code, signal) => {
      // A partial last line was not acknowledged: the write had not completed.
      if (signal !== 'SIGKILL' || !killed) reject(new Error(`worker ended by itself (${code ?? signal}): ${stderr}`));
      else resolve(ack);
    });
  });
}

/** Everything that must hold after a crash; returns what is wrong (empty when whole). */
function audit(db: Db, acknowledged: Acknowledged[], now: number): string[] {
  const problems: string[] = [];
  const integrity = db.pragma('integrity_check', { simple: true });
  if (integrity !== 'ok') problems.push(`integrity_check: ${String(integrity)}`);
  const foreign = db.pragma('foreign_key_check') as unknown[];
  if (foreign.length > 0) problems.push(`foreign_key_check: ${JSON.stringify(foreign.slice(0, 3))}`);
  const orphans = db.prepare('SELECT count(*) FROM bridge WHERE sid NOT IN (SELECT sid FROM session)').pluck().get() as number;
  if (orphans > 0) problems.push(`${orphans} bridges without a session`);
  const violations = invariantViolations(db, now);
  if (violations.length > 0) problems.push(`invariant: ${JSON.stringify(violations.slice(0, 3))}`);

  // No half-created session: every live session routes both ways, to itself.
  const lookup = storeBridgeLookup(db);
  const ids = db.prepare('SELECT id FROM session').pluck().all() as string[];
  for (const id of ids) {
    const s = getSession(db, id, now);
    if (s.state === 'ended') continue;
    const [p1, p2] = s.parties;
    const there = decideRoute({ caller: p1.number, dialled: p2.maskedAs }, now, lookup);
    const back = decideRoute({ caller: p2.number, dialled: p1.maskedAs }, now, lookup);
    if (there.status !== 'BRIDGE' || there.session !== id || there.target !== p2.number || there.presentedCallerId !== p1.maskedAs) {
      problems.push(`live session ${id} does not route first -> second: ${JSON.stringify(there)}`);
    }
    if (back.status !== 'BRIDGE' || back.session !== id || back.target !== p1.number || back.presentedCallerId !== p2.maskedAs) {
      problems.push(`live session ${id} does not route second -> first: ${JSON.stringify(back)}`);
    }
  }

  // Everything acknowledged before any of the kills on this file is there.
  for (const ack of acknowledged) {
    for (const [id, [first, second, firstMasked, secondMasked]] of ack.created) {
      let s: Session;
      try {
        s = getSession(db, id, now);
      } catch {
        problems.push(`acknowledged session ${id} is missing`);
        continue;
      }
      const [p1, p2] = s.parties;
      if (p1.number !== first || p2.number !== second || p1.maskedAs !== firstMasked || p2.maskedAs !== secondMasked) {
        problems.push(`acknowledged session ${id} changed`);
      }
    }
    for (const id of ack.released) {
      if (getSession(db, id, now).releasedAt === null) problems.push(`acknowledged release of ${id} is lost`);
    }
  }
  return problems;
}

/** Groups run side by side (each on its own file): most of a trial is a process starting up. */
const PARALLEL_FILES = 3;

it(`${TRIALS} SIGKILLs at random moments of a creating process: the store stays whole and keeps every acknowledged write`, async () => {
  const phases = { beforeOpen: 0, openNoAck: 0, creating: 0 };
  let acknowledgedCreates = 0;
  let acknowledgedReleases = 0;
  let trialsRun = 0;
  const started = performance.now();
  const files = Math.ceil(TRIALS / TRIALS_PER_FILE);

  const runFile = async (file: number): Promise<void> => {
    const random = prng(20261125 + file);
    const path = join(dir, `vnum-${file}.db`);
    const acknowledged: Acknowledged[] = [];
    let readyAfterMs = 400;
    for (let trial = file * TRIALS_PER_FILE; trial < Math.min(TRIALS, (file + 1) * TRIALS_PER_FILE); trial++) {
      // Half the kills fall anywhere from start-up on (loading, opening, migrating,
      // loading the pool, creating: start-up as long as it took last time, plus
      // 300 ms), half while creating, up to ~400 creates in.
      const fromSpawn = trial % 2 === 0;
      const ack = await runAndKill(path, trial, Math.floor(random() * (fromSpawn ? readyAfterMs + 300 : 350)), fromSpawn ? 'spawn' : 'ready');
      if (ack.readyAfterMs !== undefined && !fromSpawn) readyAfterMs = ack.readyAfterMs;
      acknowledged.push(ack);
      trialsRun++;
      if (!ack.ready) phases.beforeOpen++;
      else if (ack.created.size === 0) phases.openNoAck++;
      else phases.creating++;
      acknowledgedCreates += ack.created.size;
      acknowledgedReleases += ack.released.size;

      if (!existsSync(path)) continue; // killed before the file was created: nothing to check
      const db = openDb(path);
      try {
        expect(audit(db, acknowledged, Date.now()), `trial ${trial}`).toEqual([]);
      } finally {
        db.close();
      }
    }
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: PARALLEL_FILES }, async () => {
      while (next < files) await runFile(next++);
    }),
  );

  expect(trialsRun).toBe(TRIALS);
  console.log(
    `crash: ${TRIALS} SIGKILL trials on ${files} files: ${phases.beforeOpen} before the store was ready, ` +
      `${phases.openNoAck} after opening and before the first create, ${phases.creating} while creating; ` +
      `${acknowledgedCreates} acknowledged creates and ${acknowledgedReleases} releases, all found; ` +
      `${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  // Most kills must land while writing, or the campaign proves little.
  expect(phases.creating).toBeGreaterThanOrEqual(TRIALS / 3);
}, 900_000);
