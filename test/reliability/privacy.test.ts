/**
 * Privacy outside Asterisk (the whole end-to-end run's log is
 * scanned in test/e2e/failclosed.e2e.test.ts):
 * - the database and its -wal/-shm are created owner-only, whatever the umask;
 * - the router's log at the default level (and at debug) carries no real
 *   number in any line, across every kind of call and a store failure;
 * - an operator command's errors name nothing of other sessions.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VNUM_BIN, vnum } from '../support/cli.js';
import { callEnvironment } from '../support/fake-asterisk.js';
import { startServe, type Serve } from '../support/serve.js';
import { sleep } from '../support/wait.js';
import { numberPattern } from '../support/leaks.js';
import { exchange, routeCall } from './lib.js';

const ENV = { VNUM_DEFAULT_COUNTRY: 'GB' };
const POOL = ['+442079460001', '+442079460002', '+442079460003'];
// Real numbers of the parties: customers and agents of several orders.
const ALICE = '+447911000001';
const DEV = '+447911000002';
const ZOE = '+447911000003';
const RAY = '+447911000004';
const SAM = '+447911000005';
const STRANGER = '+447400900123';

let dir: string;
let db: string;
let serve: Serve | undefined;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-rel-privacy-'));
  db = join(dir, 'data', 'vnum.db');
});
afterEach(async () => {
  await serve?.stop();
  serve = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function ok(args: string[]): string {
  const r = vnum(['--db', db, ...args], ENV);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

/** The real numbers (of `numbers`) that appear in `text`, in any formatting. */
function leaked(text: string, numbers: string[]): string[] {
  return numbers.filter((n) => numberPattern(n).test(text));
}

const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8).padStart(4, '0');

describe('the database file', () => {
  it('is created owner-only (0600, its folder 0700), and so are -wal and -shm, even under umask 000', async () => {
    const underUmask000 = (args: string[]) =>
      spawnSync('sh', ['-c', 'umask 000 && exec "$0" "$@"', process.execPath, VNUM_BIN, '--db', db, ...args], {
        encoding: 'utf8',
        env: { ...process.env, ...ENV },
      });
    const created = underUmask000(['pool', 'add', ...POOL]);
    expect(created.status, created.stderr).toBe(0);
    expect(mode(db)).toBe('0600');
    expect(mode(join(dir, 'data'))).toBe('0700');
    // The router holds the store open: -wal and -shm exist while it runs.
    ok(['session', 'create', 'o1', ALICE, DEV]);
    serve = await startServe({ db, umask: '000' });
    const masked = JSON.parse(ok(['session', 'show', 'o1', '--json'])).parties[1].maskedAs as string;
    expect((await routeCall(serve.port, ALICE, masked)).answer?.status).toBe('BRIDGE');
    for (const suffix of ['', '-wal', '-shm']) expect(`${suffix}: ${mode(db + suffix)}`).toBe(`${suffix}: 0600`);
  });
});

describe('the router\'s log', () => {
  const REAL = [ALICE, DEV, ZOE, RAY, STRANGER];
  async function runCalls(level: Record<string, string | undefined>): Promise<string[]> {
    ok(['pool', 'add', ...POOL]);
    const order = JSON.parse(ok(['session', 'create', 'o1', ALICE, DEV, '--json']));
    const ended = JSON.parse(ok(['session', 'create', 'o2', ZOE, RAY, '--json']));
    ok(['session', 'release', 'o2', '--grace', '0s']);
    serve = await startServe({ db, env: level });
    const [aMasked, dMasked] = [order.parties[0].maskedAs, order.parties[1].maskedAs];
    expect((await routeCall(serve.port, ALICE, dMasked)).answer?.status).toBe('BRIDGE');
    expect((await routeCall(serve.port, DEV, aMasked)).answer?.status).toBe('BRIDGE');
    expect((await routeCall(serve.port, '07911 000001', dMasked.slice(1))).answer?.status).toBe('BRIDGE');
    expect((await routeCall(serve.port, ZOE, ended.parties[1].maskedAs)).answer?.status).toBe('ENDED');
    expect((await routeCall(serve.port, STRANGER, dMasked)).answer?.status).toBe('NO_SESSION');
    // Invalid callers carrying a real number: logged as invalid, the number redacted.
    for (const hostile of [`${ALICE}&PJSIP/x`, `"${DEV}"`, `${RAY};x`, `tel:${ZOE}`]) {
      expect((await routeCall(serve.port, hostile, dMasked)).answer?.status).toBe('INVALID');
    }
    // Garbage and a protocol error carrying numbers.
    await exchange(serve.port, { send: `agi_callerid: ${ALICE}\nnonsense ${DEV}\n\n`, then: 'end' });
    await exchange(serve.port, { send: callEnvironment(ALICE, dMasked).replace('agi_extension', `x_${DEV}`), then: 'end' });
    // A store failure while calls come in.
    for (const suffix of ['', '-wal', '-shm']) renameSync(db + suffix, join(dir, `moved${suffix}`));
    mkdirSync(db);
    expect((await routeCall(serve.port, ALICE, dMasked)).answer?.status).toBe('ERROR');
    rmdirSync(db);
    for (const suffix of ['', '-wal', '-shm']) renameSync(join(dir, `moved${suffix}`), db + suffix);
    await sleep(1_100);
    expect((await routeCall(serve.port, ALICE, dMasked)).answer?.status).toBe('BRIDGE');
    await serve.stop();
    return serve.lines();
  }

  it('at the default level: no real number in any line', async () => {
    const lines = await runCalls({});
    expect(lines.length).toBeGreaterThan(5);
    expect(lines.some((l) => l.includes('invalid call'))).toBe(true);
    expect(lines.some((l) => l.includes('store failed'))).toBe(true);
    expect(lines.filter((l) => leaked(l, REAL).length > 0)).toEqual([]);
  });

  it('at debug level too (one line per FastAGI connection)', async () => {
    const lines = await runCalls({ VNUM_LOG_LEVEL: 'debug' });
    expect(lines.filter((l) => l.includes('"FastAGI connection"')).length).toBeGreaterThan(8);
    expect(lines.filter((l) => leaked(l, REAL).length > 0)).toEqual([]);
  });

  it('control: with VNUM_LOG_REDACT=off the same scan finds the numbers, so it can fail', async () => {
    const lines = await runCalls({ VNUM_LOG_LEVEL: 'debug', VNUM_LOG_REDACT: 'off' });
    expect(leaked(lines.join('\n'), REAL).length).toBeGreaterThan(0);
  });
});

describe('operator commands', () => {
  it('an error shown for one command names nothing of other sessions', () => {
    ok(['pool', 'add', POOL[0]!, POOL[1]!]);
    // Other people's sessions: their real numbers must not appear in anyone else's errors.
    const order1 = JSON.parse(ok(['session', 'create', 'order-1', ALICE, DEV, '--json']));
    const aliceMasked = order1.parties[0].maskedAs as string;
    ok(['session', 'create', 'order-2', ZOE, DEV]);
    ok(['session', 'create', 'order-3', RAY, ZOE]);
    const others = [ALICE, DEV, ZOE, RAY];
    const cases: Array<{ args: string[]; code: RegExp }> = [
      // The id is taken by other parties.
      { args: ['session', 'create', 'order-1', SAM, STRANGER], code: /VNUM_SESSION_CONFLICT/ },
      { args: ['session', 'create', 'order-1', SAM, STRANGER, '--json'], code: /VNUM_SESSION_CONFLICT/ },
      // A masked number DEV (the dialler here) already dials in Alice's order: the refusal must not say whose.
      { args: ['session', 'create', 'order-7', STRANGER, DEV, '--first-masked-as', aliceMasked], code: /VNUM_NUMBER_UNAVAILABLE/ },
      // Not in the pool.
      { args: ['session', 'create', 'order-8', SAM, STRANGER, '--first-masked-as', '+442079460009'], code: /VNUM_NOT_IN_POOL/ },
      { args: ['pool', 'retire', '+442079460009'], code: /VNUM_NOT_IN_POOL/ },
      // Unknown sessions.
      { args: ['session', 'show', 'order-404'], code: /VNUM_SESSION_NOT_FOUND/ },
      { args: ['session', 'release', 'order-404'], code: /VNUM_SESSION_NOT_FOUND/ },
      // Bad numbers and ids.
      { args: ['session', 'create', 'order-9', 'not-a-number', SAM], code: /VNUM_INVALID_NUMBER/ },
      { args: ['session', 'create', 'bad id!', SAM, STRANGER], code: /VNUM_INVALID_ARGUMENT/ },
      { args: ['route', `${SAM}&x`, POOL[0]!], code: /./ },
      // Nothing about others in a refusal for a stranger.
      { args: ['route', STRANGER, POOL[0]!], code: /NO_SESSION/ },
      { args: ['session', 'list', '--party', STRANGER], code: /./ },
    ];
    const seen: string[] = [];
    for (const c of cases) {
      const r = vnum(['--db', db, ...c.args], ENV);
      const text = r.stdout + r.stderr;
      expect(text, c.args.join(' ')).toMatch(c.code);
      const own = c.args.filter((a) => /^\+?\d/.test(a));
      expect(leaked(text, others.filter((n) => !own.includes(n))), `${c.args.join(' ')} -> ${text}`).toEqual([]);
      seen.push(text.trim().split('\n')[0]!);
    }
    // Pool exhausted (2 numbers; SAM and ZOE both in 2 live sessions): names a party of the
    // command and counts, never the sessions that hold the numbers.
    ok(['session', 'create', 'order-4', SAM, RAY]);
    ok(['session', 'create', 'order-5', SAM, STRANGER]);
    const exhausted = vnum(['--db', db, 'session', 'create', 'order-6', SAM, ZOE], ENV);
    expect(exhausted.stderr).toMatch(/VNUM_POOL_EXHAUSTED/);
    expect(leaked(exhausted.stderr, [ALICE, DEV, RAY, STRANGER])).toEqual([]);
    // stats: the busiest party is redacted.
    const stats = ok(['stats']);
    expect(leaked(stats, [ALICE, DEV, ZOE, RAY, SAM])).toEqual([]);
    // A party's own number offered to the pool: the refusal names only that number.
    const conflict = vnum(['--db', db, 'pool', 'add', ZOE], ENV);
    expect(conflict.stderr).toMatch(/VNUM_POOL_CONFLICT/);
    expect(leaked(conflict.stderr, [ALICE, DEV, RAY, SAM])).toEqual([]);
    // An unusable database: the path, never contents.
    const broken = vnum(['--db', dir, 'session', 'show', 'order-1'], ENV);
    expect(broken.code).toBe(2);
    expect(leaked(broken.stderr, others)).toEqual([]);
    expect(seen.length).toBe(cases.length);
  });
});
