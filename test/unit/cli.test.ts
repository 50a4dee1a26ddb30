import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { vnum } from '../support/cli.js';

let dir: string;
let db: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-cli-'));
  db = join(dir, 'vnum.db');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const A = '+447911000001';
const D = '+447911000002';
const run = (...args: string[]) => vnum(['--db', db, ...args]);
const json = (...args: string[]) => {
  const result = run(...args, '--json');
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout);
};

function expectUserError(result: ReturnType<typeof vnum>, message: RegExp) {
  expect(result.code).toBe(1);
  expect(result.stdout).toBe('');
  expect(result.stderr.trim().split('\n')).toHaveLength(1);
  expect(result.stderr).toMatch(message);
}

describe('vnum CLI (built executable)', () => {
  it('manages the pool: add, list, retire, with stable JSON', () => {
    expect(run('pool', 'add', '+442079460001', '02079460002', '--country', 'GB').stdout).toBe('pool: 2 added, 0 updated, 0 unchanged\n');
    expect(run('pool', 'add', '+442079460003', '--reserved').code).toBe(0);
    expect(run('pool', 'retire', '+442079460002').stdout).toBe('+442079460002 retired\n');
    const list = json('pool', 'list');
    expect(list.map((n: { number: string; state: string }) => [n.number, n.state])).toEqual([
      ['+442079460001', 'available'],
      ['+442079460002', 'retired'],
      ['+442079460003', 'reserved'],
    ]);
    expect(Object.keys(list[0])).toEqual(['number', 'country', 'state', 'addedAt']);
    const table = run('pool', 'list').stdout.split('\n');
    expect(table[0]).toMatch(/^NUMBER\s+COUNTRY\s+STATE\s+ADDED$/);
    expect(table[1]!.indexOf('GB')).toBe(table[0]!.indexOf('COUNTRY'));
  });

  it('imports a CSV; importing it again changes nothing', () => {
    const csv = join(dir, 'dids.csv');
    writeFileSync(csv, 'number,country,state\n+442079460001,GB,available\n02079460002,GB,reserved\n');
    expect(json('pool', 'import', csv)).toEqual({ added: 2, updated: 0, unchanged: 0 });
    const before = json('pool', 'list');
    expect(json('pool', 'import', csv)).toEqual({ added: 0, updated: 0, unchanged: 2 });
    expect(json('pool', 'list')).toEqual(before);
  });

  it('writes nothing from a CSV with one bad line, and names the line', () => {
    const csv = join(dir, 'bad.csv');
    writeFileSync(csv, '+442079460001\n+442079460002\nnot-a-number\n');
    expectUserError(run('pool', 'import', csv), /^vnum: line 3: invalid number "not-a-number"/);
    expect(json('pool', 'list')).toEqual([]);
  });

  it('creates, shows, lists and releases sessions; route answers from the same decision as the router', () => {
    run('pool', 'add', '+442079460001', '+442079460002');
    const created = json('session', 'create', 'order-7', A, D, '--ttl', '2h');
    expect(Object.keys(created)).toEqual(['id', 'state', 'expiresAt', 'parties', 'createdAt', 'releasedAt', 'endsAt', 'created']);
    expect(created).toMatchObject({ id: 'order-7', state: 'active', created: true });
    expect(Date.parse(created.expiresAt) - Date.parse(created.createdAt)).toBe(2 * 3_600_000);
    const [a, d] = created.parties;
    expect(Object.keys(a)).toEqual(['number', 'maskedAs']);
    expect(json('session', 'show', 'order-7')).toEqual(Object.fromEntries(Object.entries(created).filter(([k]) => k !== 'created')));
    expect(json('route', A, d.maskedAs)).toEqual({ status: 'BRIDGE', target: D, cli: a.maskedAs, session: 'order-7' });
    expect(json('route', '07911000002', d.maskedAs.slice(1), '--country', 'GB')).toEqual({ status: 'BRIDGE', target: A, cli: d.maskedAs, session: 'order-7' });
    expect(json('route', '+447911000099', d.maskedAs)).toEqual({ status: 'NO_SESSION', target: null, cli: null, session: null });
    expect(json('session', 'list', '--party', A).map((s: { id: string }) => s.id)).toEqual(['order-7']);
    expect(run('session', 'release', 'order-7', '--grace', '10m').stdout).toMatch(/^session order-7 released: calls connect until /);
    expect(json('session', 'list', '--state', 'grace')).toHaveLength(1);
    expect(run('session', 'release', 'order-7', '--grace', '0s').stdout).toBe('session order-7 ended\n');
    expect(json('route', A, d.maskedAs)).toEqual({ status: 'ENDED', target: null, cli: null, session: 'order-7' });
    expect(json('stats')).toEqual({
      pool: { available: 2, reserved: 0, retired: 0, total: 2 },
      sessions: { active: 0, grace: 0, ended: 1 },
      busiestParty: { number: null, liveSessions: 0, poolAvailable: 2 },
    });
  });

  it('returns the existing session on a retried create, and refuses other parties under that id', () => {
    run('pool', 'add', '+442079460001');
    const first = json('session', 'create', 'o1', A, D);
    const retry = json('session', 'create', 'o1', A, D);
    expect(retry).toEqual({ ...first, created: false });
    expectUserError(run('session', 'create', 'o1', A, '+447911000003'), /already exists with other parties \[VNUM_SESSION_CONFLICT\]/);
  });

  it('explains an exhausted pool with the party’s session count and the pool size', () => {
    run('pool', 'add', '+442079460001');
    run('session', 'create', 'o1', A, D);
    expectUserError(
      run('session', 'create', 'o2', '+447911000003', D),
      /pool exhausted for \+447911000002: it is in 1 live session and the pool has 1 available number \(1 in all\)/,
    );
  });

  it('gives bad input a one-line cause and exit 1, with nothing written', () => {
    expectUserError(run('pool', 'add', '07911'), /has no country code: .*--country XX or VNUM_DEFAULT_COUNTRY=XX/);
    expectUserError(run('pool', 'add', '+442079460001', 'x&y'), /invalid number "x&y"/);
    expect(json('pool', 'list')).toEqual([]);
    expectUserError(run('session', 'create', 'bad id', A, D), /invalid session id/);
    expectUserError(run('session', 'create', 'o1', A, D, '--ttl', 'soon'), /invalid TTL "soon"/);
    expectUserError(run('session', 'show', 'nope'), /no session "nope" \[VNUM_SESSION_NOT_FOUND\]/);
    expectUserError(run('session', 'list', '--state', 'open'), /unknown state "open"/);
    expectUserError(run('pool', 'import', join(dir, 'missing.csv')), /cannot read .*missing.csv: ENOENT/);
    expect(run('nonsense').code).toBe(1);
    const invalid = run('route', 'anonymous', '+442079460001', '--json');
    expect(invalid.code).toBe(1);
    expect(JSON.parse(invalid.stdout).status).toBe('INVALID');
  });

  it('exits 2 on an internal error such as an unusable database', () => {
    writeFileSync(db, 'this is not a database, just text long enough to look like a corrupt header............');
    const result = run('pool', 'list');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^vnum: cannot use database .*\[VNUM_DATABASE\]\n$/);
  });

  it('needs no configuration: the default database is created owner-only under the home directory', () => {
    const result = vnum(['pool', 'add', '+442079460001'], { HOME: dir, XDG_DATA_HOME: undefined });
    expect(result.code).toBe(0);
    const path = join(dir, '.local', 'share', 'vnum', 'vnum.db');
    expect(existsSync(path)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(vnum(['pool', 'list', '--json'], { HOME: dir, XDG_DATA_HOME: undefined, VNUM_DB: undefined }).stdout).toContain('+442079460001');
    // VNUM_DB overrides the default, --db overrides VNUM_DB.
    expect(JSON.parse(vnum(['pool', 'list', '--json'], { HOME: dir, VNUM_DB: join(dir, 'other.db') }).stdout)).toEqual([]);
  });

  it('prints its version', () => {
    expect(vnum(['--version']).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});
