/**
 * At the FastAGI level: `vnum serve` (the built executable)
 * while its database becomes unusable. Every call made meanwhile gets ERROR
 * (the dialplan then plays an announcement) or, at worst, a closed socket
 * (the dialplan fails closed on a missing answer too), and never a BRIDGE; and
 * once the cause is gone the router routes again by itself, without a restart.
 *
 * The router killed and the router hung (accepts, never answers) are covered
 * end to end with a real Asterisk in test/e2e/routing.e2e.test.ts ("6. the
 * router failing"); the database causes end to end are in
 * test/e2e/failclosed.e2e.test.ts. What a lock really does is measured here:
 * see docs/reliability.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFastAgiServer } from '../../agi/server.js';
import { FALLBACK_ANSWER } from '../../src/cli/serve.js';
import { createCallRouter } from '../../src/routing/service.js';
import { VNUM_BIN, vnum } from '../support/cli.js';
import { captureLog } from '../support/log.js';
import { callEnvironment } from '../support/fake-asterisk.js';
import { startServe, type Serve } from '../support/serve.js';
import { holdLock } from '../support/store.js';
import { sleep } from '../support/wait.js';
import { exchange, routeCall, type Answer } from './lib.js';

const A = '+447911000001';
const D = '+447911000002';
const ENV = { VNUM_DEFAULT_COUNTRY: 'GB' };

let dir: string;
let db: string;
let serve: Serve | undefined;
let holder: ChildProcess | undefined;
let dMasked: string;
let aMasked: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-rel-failclosed-'));
  db = join(dir, 'vnum.db');
  expect(vnum(['--db', db, 'pool', 'add', '+442079460001', '+442079460002'], ENV).code).toBe(0);
  const session = JSON.parse(vnum(['--db', db, 'session', 'create', 'o1', A, D, '--json'], ENV).stdout);
  aMasked = session.parties[0].maskedAs;
  dMasked = session.parties[1].maskedAs;
});
afterEach(async () => {
  holder?.kill('SIGKILL');
  holder = undefined;
  await serve?.stop();
  serve = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const BRIDGED = (): Answer => ({ status: 'BRIDGE', target: D, cli: aMasked, session: 'o1' });

/** A calls D's masked number: the answer, or 'closed' when the router closed without one. */
async function callAD(): Promise<Answer | 'closed'> {
  const { answer } = await routeCall(serve!.port, A, dMasked);
  return answer ?? 'closed';
}

/** Calls placed one after another for `ms`: what each got. */
async function callsFor(ms: number): Promise<Array<Answer | 'closed'>> {
  const answers: Array<Answer | 'closed'> = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    answers.push(await callAD());
    await sleep(50);
  }
  return answers;
}

/** Calls until one bridges; how long that took. Fails after `limitMs`. */
async function recovers(limitMs = 15_000): Promise<number> {
  const start = Date.now();
  for (;;) {
    const answer = await callAD();
    if (answer !== 'closed' && answer.status === 'BRIDGE') {
      expect(answer).toEqual(BRIDGED());
      return Date.now() - start;
    }
    if (answer !== 'closed') expect(answer.status).toBe('ERROR');
    if (Date.now() - start > limitMs) throw new Error(`the router did not route again within ${limitMs} ms`);
    await sleep(100);
  }
}

function storeErrors(): string[] {
  return serve!.lines().filter((l) => l.includes('store failed'));
}

const ERROR: Answer = { status: 'ERROR', target: '', cli: '', session: '' };

describe('vnum serve while its database is unusable', () => {
  it('the path becomes a directory: ERROR for every call, then it routes again once the file is back', async () => {
    serve = await startServe({ db });
    expect(await callAD()).toEqual(BRIDGED());
    // The file and its WAL move away (the router still has them open) and a directory takes the path.
    for (const suffix of ['', '-wal', '-shm']) renameSync(db + suffix, join(dir, `moved${suffix}`));
    mkdirSync(db);
    const during = await callsFor(1_500);
    expect(during.length).toBeGreaterThan(3);
    expect(during.every((a) => a !== 'closed' && a.status === 'ERROR'), JSON.stringify(during)).toBe(true);
    expect(during).toContainEqual(ERROR);
    rmdirSync(db);
    for (const suffix of ['', '-wal', '-shm']) renameSync(join(dir, `moved${suffix}`), db + suffix);
    const tookMs = await recovers();
    expect(storeErrors().length).toBeGreaterThan(0);
    console.log(`fail-closed: path became a directory: ${during.length} calls, all ERROR; routing again ${tookMs} ms after the file came back`);
  }, 30_000);

  it('the file is replaced by garbage: ERROR for every call, then it routes again once the real file is back', async () => {
    serve = await startServe({ db });
    expect(await callAD()).toEqual(BRIDGED());
    renameSync(db, join(dir, 'good.db'));
    writeFileSync(db, randomBytes(64 * 1024), { mode: 0o600 });
    const during = await callsFor(1_500);
    expect(during.every((a) => a !== 'closed' && a.status === 'ERROR'), JSON.stringify(during)).toBe(true);
    renameSync(join(dir, 'good.db'), db);
    const tookMs = await recovers();
    console.log(`fail-closed: file replaced by garbage: ${during.length} calls, all ERROR; routing again ${tookMs} ms after the file came back`);
  }, 30_000);

  it('the file is deleted: ERROR for every call (no ghost routing, no empty database made in its place), then it routes again once it is restored', async () => {
    serve = await startServe({ db });
    expect(await callAD()).toEqual(BRIDGED());
    // A backup first, as an operator restoring one would have.
    const backup = join(dir, 'backup.db');
    const checkpointer = new Database(db);
    checkpointer.pragma('wal_checkpoint(TRUNCATE)');
    checkpointer.close();
    writeFileSync(backup, readFileSync(db), { mode: 0o600 });
    for (const suffix of ['', '-wal', '-shm']) rmSync(db + suffix, { force: true });
    const during = await callsFor(1_500);
    expect(during.length).toBeGreaterThan(3);
    expect(during.every((a) => a !== 'closed' && a.status === 'ERROR'), JSON.stringify(during)).toBe(true);
    // Nothing at the path, for the router and the call log alike: the CLI finds no database either.
    expect(existsSync(db)).toBe(false);
    const route = vnum(['--db', db, 'route', A, dMasked, '--json'], ENV);
    expect(route.code).toBe(1);
    expect(route.stderr).toMatch(/\[VNUM_DATABASE_NOT_FOUND\]/);
    renameSync(backup, db);
    const tookMs = await recovers();
    expect(storeErrors().length).toBeGreaterThan(0);
    console.log(`fail-closed: file deleted: ${during.length} calls, all ERROR, no database made at the path; routing again ${tookMs} ms after it was restored`);
  }, 30_000);

  it('the file is corrupted in place: ERROR for every call, then it routes again once the bytes are restored', async () => {
    serve = await startServe({ db });
    expect(await callAD()).toEqual(BRIDGED());
    // Everything into the main file, so the damage below is all there is to read.
    const checkpointer = new Database(db);
    checkpointer.pragma('wal_checkpoint(TRUNCATE)');
    checkpointer.close();
    const good = readFileSync(db);
    const pageSize = 4096;
    // Page 1 (header, schema) intact; every other page garbage: the same file, same inode.
    const bad = Buffer.concat([good.subarray(0, pageSize), randomBytes(good.length - pageSize)]);
    writeFileSync(db, bad);
    const during = await callsFor(1_500);
    expect(during.some((a) => a === 'closed' || a.status === 'BRIDGE'), JSON.stringify(during)).toBe(false);
    expect(during.filter((a) => a !== 'closed' && a.status === 'ERROR').length, JSON.stringify(during)).toBeGreaterThan(0);
    writeFileSync(db, good);
    const tookMs = await recovers();
    console.log(
      `fail-closed: corrupted in place: ${during.length} calls: ${during.filter((a) => a !== 'closed' && a.status === 'ERROR').length} ERROR, ` +
        `0 BRIDGE; routing again ${tookMs} ms after the bytes were restored`,
    );
  }, 30_000);

  it('another process holds BEGIN EXCLUSIVE for 3 s: WAL readers are not blocked, so calls keep getting the committed answer', async () => {
    serve = await startServe({ db });
    expect(await callAD()).toEqual(BRIDGED());
    holder = (await holdLock(db, 'BEGIN EXCLUSIVE', 3_000)).child;
    // A release started under the lock waits for it (busy timeout 5 s), then lands.
    const release = runCli(['--db', db, 'session', 'release', 'o1', '--grace', '0s']);
    const during = await callsFor(2_000);
    expect(during.every((a) => a !== 'closed' && a.status === 'BRIDGE'), JSON.stringify(during)).toBe(true);
    const released = await release;
    expect(released.code, released.stderr).toBe(0);
    // The release is seen at once afterwards.
    expect(await callAD()).toEqual({ status: 'ENDED', target: '', cli: '', session: 'o1' });
    expect(storeErrors()).toEqual([]);
    console.log(`fail-closed: BEGIN EXCLUSIVE held 3 s: ${during.length} calls answered from the committed state meanwhile; the release waited, then applied`);
  }, 30_000);

  it('a lock that blocks readers (locking_mode=EXCLUSIVE): the router answers ERROR within its short busy timeout, and routes again after it', () => {
    // vnum serve holds a store connection from its start (call log status), so
    // while it runs no other process can take this lock (see the test above).
    // The router's own defence against it is shown on its store glue directly:
    // the lock is taken before the router's first open.
    const lock = new Database(db);
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.exec('BEGIN EXCLUSIVE');
    const { logger } = captureLog();
    const router = createCallRouter({ dbPath: db, defaultCountry: 'GB', logger, reopenDelayMs: 0 });
    try {
      const call = { callerId: A, extension: dMasked, dnid: dMasked };
      const during = [router.route(call), router.route(call), router.route(call)];
      expect(during.map((a) => a.status)).toEqual(['ERROR', 'ERROR', 'ERROR']);
      lock.exec('COMMIT');
      lock.close();
      expect(router.route(call)).toEqual({ status: 'BRIDGE', target: D, presentedCallerId: aMasked, session: 'o1' });
    } finally {
      if (lock.open) lock.close();
      router.close();
    }
  });
});

function runCli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [VNUM_BIN, ...args], {
      env: { ...process.env, ...ENV },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('the router\'s own deadline', () => {
  it('a synchronous route that blocks past the session deadline gets no answer out: the socket is closed instead', async () => {
    const log = captureLog();
    let blockMs = 300;
    const router = await startFastAgiServer({
      port: 0,
      deadlineMs: 150,
      logger: log.logger,
      fallback: FALLBACK_ANSWER,
      handler: () => {
        // A blocked database read: the event loop (and the deadline timer) stands still.
        const until = performance.now() + blockMs;
        while (performance.now() < until);
        return { variables: [['VNUM_STATUS', 'BRIDGE'], ['VNUM_TARGET', D], ['VNUM_CLI', '+442079460001'], ['VNUM_SESSION', 'o1']] };
      },
    });
    try {
      const late = await exchange(router.address().port, { send: callEnvironment(A, '+442079460002'), then: 'hold', timeoutMs: 5_000 });
      expect(late.closedByRouter).toBe(true);
      expect(late.received).toBe('');
      expect(log.records().some((r) => r.msg === 'FastAGI deadline passed: connection destroyed')).toBe(true);
      // In time, the same route is answered.
      blockMs = 10;
      const inTime = await routeCall(router.address().port, A, '+442079460002');
      expect(inTime.answer?.status).toBe('BRIDGE');
    } finally {
      await router.close(0);
    }
  });
});
