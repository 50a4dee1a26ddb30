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
    expect(Object.keys(list[0])).toEqual(['number', 'country', 'state', 'addedAt', 'pin', 'outOfSession', 'fallback']);
    const table = run('pool', 'list').stdout.split('\n');
    expect(table[0]).toMatch(/^NUMBER\s+COUNTRY\s+STATE\s+ADDED\s+PIN\s+OUT OF SESSION\s+DESK$/);
    expect(table[1]!.indexOf('GB')).toBe(table[0]!.indexOf('COUNTRY'));
  });

  it('imports a CSV; importing it again changes nothing', () => {
    const csv = join(dir, 'dids.csv');
    writeFileSync(csv, 'number,country,state\n+442079460001,GB,available\n02079460002,GB,reserved\n');
    expect(json('pool', 'import', csv)).toEqual({ added: 2, updated: 0, unchanged: 0, kept: [] });
    const before = json('pool', 'list');
    expect(json('pool', 'import', csv)).toEqual({ added: 0, updated: 0, unchanged: 2, kept: [] });
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
    expect(Object.keys(created)).toEqual(['id', 'state', 'expiresAt', 'parties', 'createdAt', 'releasedAt', 'endsAt', 'idleTimeoutMs', 'calls', 'created']);
    expect(created).toMatchObject({ id: 'order-7', state: 'active', created: true });
    expect(Date.parse(created.expiresAt) - Date.parse(created.createdAt)).toBe(2 * 3_600_000);
    const [a, d] = created.parties;
    expect(Object.keys(a)).toEqual(['number', 'maskedAs', 'pin']);
    // show: the same session, without the PINs (shown once, at create).
    const shown = { ...created, parties: created.parties.map(({ pin: _pin, ...p }: { pin: string }) => p) };
    expect(json('session', 'show', 'order-7')).toEqual(Object.fromEntries(Object.entries(shown).filter(([k]) => k !== 'created')));
    expect(json('route', A, d.maskedAs)).toEqual({ status: 'BRIDGE', target: D, cli: a.maskedAs, session: 'order-7', reason: null });
    expect(json('route', '07911000002', d.maskedAs.slice(1), '--country', 'GB')).toEqual({
      status: 'BRIDGE',
      target: A,
      cli: d.maskedAs,
      session: 'order-7',
      reason: null,
    });
    expect(json('route', '+447911000099', d.maskedAs)).toEqual({ status: 'NO_SESSION', target: null, cli: null, session: null, reason: null });
    expect(json('session', 'list', '--party', A).map((s: { id: string }) => s.id)).toEqual(['order-7']);
    expect(run('session', 'release', 'order-7', '--grace', '10m').stdout).toMatch(/^session order-7 released: calls connect until /);
    expect(json('session', 'list', '--state', 'grace')).toHaveLength(1);
    expect(run('session', 'release', 'order-7', '--grace', '0s').stdout).toBe('session order-7 ended\n');
    expect(json('route', A, d.maskedAs)).toEqual({ status: 'ENDED', target: null, cli: null, session: 'order-7', reason: null });
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
    // The PINs are shown to the create that issued them only.
    expect(retry).toEqual({ ...first, parties: first.parties.map(({ pin: _pin, ...p }: { pin: string }) => p), created: false });
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
    run('pool', 'add', '+442079460001');
    const invalid = run('route', 'anonymous', '+442079460001', '--json');
    expect(invalid.code).toBe(1);
    expect(JSON.parse(invalid.stdout).status).toBe('INVALID');
  });

  it('refuses a party whose number type the policy refuses: VNUM_NUMBER_NOT_ALLOWED, exit 1, nothing written', () => {
    run('pool', 'add', '+442079460001', '+442079460002');
    for (const premium of ['+449098790000', '+19005551234', '+881612345678']) {
      expectUserError(run('session', 'create', 'o1', A, premium), new RegExp(`^vnum: \\${premium} is .*\\[VNUM_NUMBER_NOT_ALLOWED\\]\\n$`));
    }
    expectUserError(run('session', 'create', 'o1', '+449098790000', D), /is a premium-rate number, which the number-type policy refuses .*\[VNUM_NUMBER_NOT_ALLOWED\]/);
    expectUserError(run('session', 'create', 'o1', A, '+881612345678', '--allowed-number-types', 'default,premium-rate'), /international-network number.*always refused/);
    // Emergency short codes stay refused, as invalid numbers.
    for (const emergency of ['999', '112', '911']) {
      expectUserError(run('session', 'create', 'o1', A, emergency, '--country', 'GB'), /invalid number .*\[VNUM_INVALID_NUMBER\]/);
    }
    expect(json('session', 'list')).toEqual([]);
    // A setting that is not a list of types is refused before anything else.
    expectUserError(run('session', 'create', 'o1', A, D, '--allowed-number-types', 'mobile,premium'), /unknown number type "premium"/);
    expectUserError(vnum(['--db', db, 'session', 'create', 'o1', A, D], { VNUM_ALLOWED_NUMBER_TYPES: '' }), /empty list of allowed number types/);
    expect(json('session', 'list')).toEqual([]);
  });

  it('widened by flag or environment, then tightened: route says NOT_ALLOWED, naming the type, never the number', () => {
    run('pool', 'add', '+442079460001', '+442079460002');
    const widened = vnum(['--db', db, 'session', 'create', 'o1', A, '+449098790000', '--json'], { VNUM_ALLOWED_NUMBER_TYPES: 'default,premium-rate' });
    expect(widened.code).toBe(0);
    const [a, premium] = JSON.parse(widened.stdout).parties;
    expect(json('session', 'create', 'o2', '+447911000005', '+448001234567', '--allowed-number-types', 'mobile,toll-free').created).toBe(true);
    // The policy back to the default: the agent's call to the premium number is refused.
    const refused = json('route', A, premium.maskedAs);
    expect(refused).toEqual({ status: 'NOT_ALLOWED', target: null, cli: null, session: 'o1', reason: expect.stringMatching(/^the target is a premium-rate number/) });
    expect(JSON.stringify(refused)).not.toContain('9098790000');
    const text = run('route', A, premium.maskedAs);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^NOT_ALLOWED \(session o1\): the target is a premium-rate number, .*: no call is placed\n$/);
    expect(text.stdout).not.toContain('9098790000');
    expect(json('route', A, premium.maskedAs, '--allowed-number-types', 'default,premium-rate').status).toBe('BRIDGE');
    // The other direction dials a mobile: the policy has nothing against it.
    expect(json('route', '+449098790000', a.maskedAs).status).toBe('BRIDGE');
  });

  it('route: NOT_POOL for a number not in the pool, whoever calls', () => {
    run('pool', 'add', '+442079460001');
    for (const caller of [A, 'anonymous', 'x&y']) {
      const r = run('route', caller, '+442079460999', '--json');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ status: 'NOT_POOL', target: null, cli: null, session: null, reason: 'the dialled number is not a pool number' });
    }
    expect(run('route', A, '+442079460999').stdout).toBe(
      'NOT_POOL: the dialled number is not a pool number: vnum places no call; the dialplan hands the call to VNUM_OTHER_CONTEXT when it is set\n',
    );
    expect(json('route', A, '+442079460001').status).toBe('NO_SESSION');
  });

  it('pool import says which numbers kept the state the operator set, and why', () => {
    const csv = join(dir, 'dids.csv');
    writeFileSync(csv, '+442079460001\n+442079460002\n+442079460003\n');
    expect(run('pool', 'import', csv).code).toBe(0);
    run('pool', 'retire', '+442079460001');
    run('pool', 'add', '+442079460002', '--reserved');
    const again = run('pool', 'import', csv);
    expect(again.stderr).toBe('');
    expect(again.stdout).toBe(
      'pool import: 0 added, 0 updated, 3 unchanged; 2 kept the state the operator set:\n' +
        '  +442079460001 retired (the row names no state)\n' +
        '  +442079460002 reserved (the row names no state)\n',
    );
    writeFileSync(csv, 'number,state\n+442079460001,available\n');
    expect(json('pool', 'import', csv)).toEqual({
      added: 0,
      updated: 0,
      unchanged: 1,
      kept: [{ number: '+442079460001', state: 'retired', reason: 'an import never puts a retired number back in service; "vnum pool add" does' }],
    });
    expect(json('pool', 'list').map((n: { number: string; state: string }) => [n.number, n.state])).toEqual([
      ['+442079460001', 'retired'],
      ['+442079460002', 'reserved'],
      ['+442079460003', 'available'],
    ]);
    // The operator's own command puts it back.
    expect(run('pool', 'add', '+442079460001').stdout).toBe('pool: 0 added, 1 updated, 0 unchanged\n');
    expect(run('pool', 'import', '--help').stdout).not.toContain('re-importing changes nothing');
  });

  it('a country that is no country is a country error, not an invalid number; a country sharing the calling code is fine', () => {
    for (const args of [
      ['pool', 'add', '02079460001', '--country', 'XX'],
      ['session', 'create', 'o1', '07911000001', '07911000002', '--country', 'XX'],
      ['route', '07911000001', '02079460001', '--country', 'ZZ'],
    ]) {
      expectUserError(run(...args), /^vnum: unknown country "(XX|ZZ)": use an ISO 3166 alpha-2 code such as GB or IN \[VNUM_INVALID_COUNTRY\]\n$/);
    }
    expectUserError(vnum(['--db', db, 'pool', 'add', '02079460001'], { VNUM_DEFAULT_COUNTRY: 'UK' }), /unknown country "UK".*\[VNUM_INVALID_COUNTRY\]/);
    expect(run('pool', 'add', '+447911123456', '--country', 'GB').stdout).toBe('pool: 1 added, 0 updated, 0 unchanged\n');
    expect(json('pool', 'list')[0]).toMatchObject({ number: '+447911123456', country: 'GB' });
    expectUserError(run('pool', 'add', '+14165550123', '--country', 'GB'), /\+1 numbering plan \(CA\), not GB's \(\+44\)/);
    // Allocation: a GB customer whose mobile libphonenumber calls Guernsey's is lent the GB number, not the lower US one.
    run('pool', 'add', '+14155550199', '+442079460050');
    const created = json('session', 'create', 'o1', '+14155550123', '+447911123457');
    expect(created.parties.map((p: { maskedAs: string }) => p.maskedAs)).toEqual(['+442079460050', '+14155550199']);
  });

  it('exits 2 on an internal error such as an unusable database', () => {
    writeFileSync(db, 'this is not a database, just text long enough to look like a corrupt header............', { mode: 0o600 });
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
    // VNUM_DB overrides the default, --db overrides VNUM_DB (a read command names the database it looked for).
    expect(vnum(['pool', 'list', '--json'], { HOME: dir, VNUM_DB: join(dir, 'other.db') }).stderr).toContain(`no database at ${join(dir, 'other.db')}`);
  });

  it('prints its version', () => {
    expect(vnum(['--version']).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});
