/**
 * The CLI on cluster mode's authority: `vnum session …` and `vnum pool …`
 * with --authority run the built CLI against a real PostgreSQL. Each
 * command runs twice, on PostgreSQL and on a single box's SQLite file, and
 * their answers must agree (JSON of the same shape, the same error codes,
 * exit codes and messages); what the PostgreSQL commands wrote is read back
 * from PostgreSQL's rows. Bad input writes nothing; release --hangup
 * writes its request on the session's row for the nodes to apply.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { PgTarget } from '../../src/replica/stream.js';
import { migratePg } from '../../src/store/pg/migrate.js';
import { PG_MIGRATIONS } from '../../src/store/pg/migrations.js';
import { vnum, type CliResult } from '../support/cli.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { DIDS, partyNumber } from '../support/cluster/writer.js';

const env = { VNUM_DEFAULT_COUNTRY: 'GB', VNUM_AUTHORITY: undefined, VNUM_DB: undefined, VNUM_LOG_LEVEL: undefined, VNUM_LOG_REDACT: undefined };
const A = partyNumber(1);
const B = partyNumber(2);
const C = partyNumber(3);
const DESK = partyNumber(900);

/** What varies between two runs of one command (times, PINs, which free number was picked) replaced by its kind, checked on the way. */
function shape(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => shape(v));
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shape(v, k)]));
  if (/At$/.test(key) && typeof value === 'string') {
    expect(value).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    return '<time>';
  }
  // A party's PIN (digits, random); a pool number's "pin" is its mode, compared as it is.
  if (key === 'pin' && typeof value === 'string' && /^\d{4,}$/.test(value)) return '<pin>';
  if (key === 'maskedAs' && typeof value === 'string') {
    expect(DIDS).toContain(value);
    return '<did>';
  }
  return value;
}

clusterSuite('vnum session and vnum pool with --authority (cluster mode)', (suite) => {
  let target: PgTarget;
  let client: pg.Client;
  let file: string;
  const onPg = (...args: string[]): CliResult => vnum([...args, '--authority', `postgres://${target.user}@${target.host}:${target.port}/${target.database}`], env);
  const onFile = (...args: string[]): CliResult => vnum(['--db', file, ...args], env);
  /** The command on both stores: it succeeds on each, and their JSON answers have one shape. */
  const both = (...args: string[]): { pg: any; file: any } => {
    const answers = [onPg(...args, '--json'), onFile(...args, '--json')].map((r) => {
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return JSON.parse(r.stdout);
    });
    expect(shape(answers[0]), args.join(' ')).toEqual(shape(answers[1]));
    return { pg: answers[0], file: answers[1] };
  };
  /** The command refused alike on both: same exit code, same message and code. */
  const refusedAlike = (code: string, ...args: string[]): CliResult => {
    const [p, f] = [onPg(...args), onFile(...args)];
    expect(p.code, p.stderr).toBe(1);
    expect(p.stdout).toBe('');
    expect(p.stderr).toContain(`[${code}]`);
    expect({ code: p.code, stderr: p.stderr, stdout: p.stdout }).toEqual({ code: f.code, stderr: f.stderr, stdout: f.stdout });
    return p;
  };
  /** Every row of the tables a session or a pool change writes: what "nothing written" compares. */
  const rows = async (): Promise<string> => {
    const tables = ['pool_number', 'session', 'bridge', 'pin', 'meta'];
    const all: unknown[] = [];
    for (const t of tables) all.push((await client.query(`SELECT * FROM ${t} ORDER BY 1, 2`)).rows);
    return JSON.stringify(all);
  };

  beforeAll(async () => {
    target = await suite.cluster.createDatabase();
    client = suite.cluster.client(target);
    await client.connect();
    await migratePg(client, PG_MIGRATIONS);
    file = join(suite.dir, 'single-box.db');
  });
  afterAll(async () => {
    await client?.end();
  });

  it('pool add, import, set, retire, list, sync: the same answers as on a file, the rows in PostgreSQL', async () => {
    const added = both('pool', 'add', ...DIDS.slice(0, 3));
    expect(added.pg).toEqual({ added: 3, updated: 0, unchanged: 0, kept: [] });
    const csv = join(suite.dir, 'export.csv');
    writeFileSync(csv, `number,state\n${DIDS[3]},reserved\n${DIDS[0]}\n`);
    expect(both('pool', 'import', csv).pg).toEqual({ added: 1, updated: 0, unchanged: 1, kept: [] });
    const { rows: pool } = await client.query('SELECT number, country, state FROM pool_number ORDER BY number');
    expect(pool).toEqual([
      ...DIDS.slice(0, 3).map((number) => ({ number, country: 'GB', state: 'available' })),
      { number: DIDS[3], country: 'GB', state: 'reserved' },
    ]);

    expect(both('pool', 'set', DIDS[0]!, '--pin', 'all', '--out-of-session', 'fallback', '--fallback', DESK).pg).toEqual({
      number: DIDS[0], pin: 'all', outOfSession: 'fallback', fallback: DESK, changed: true,
    });
    const { rows: handling } = await client.query('SELECT pin_mode, out_of_session, fallback FROM pool_number WHERE number = $1', [DIDS[0]]);
    expect(handling).toEqual([{ pin_mode: 'all', out_of_session: 'fallback', fallback: DESK }]);
    // The text answers too, where nothing in them varies.
    for (const args of [['pool', 'set', DIDS[0]!, '--pin', 'default'], ['pool', 'retire', DIDS[3]!], ['pool', 'retire', DIDS[3]!]]) {
      const [p, f] = [onPg(...args), onFile(...args)];
      expect(p, args.join(' ')).toEqual(f);
      expect(p.code, p.stderr).toBe(0);
    }
    expect(onPg('pool', 'retire', DIDS[3]!).stdout).toBe(`${DIDS[3]} was already retired\n`);
    const { rows: retired } = await client.query('SELECT state FROM pool_number WHERE number = $1', [DIDS[3]]);
    expect(retired).toEqual([{ state: 'retired' }]);

    const listed = both('pool', 'list');
    expect(listed.pg.map((n: { number: string; state: string; pin: string | null }) => [n.number, n.state, n.pin])).toEqual([
      [DIDS[0], 'available', null], // --pin default: back to vnum serve's
      [DIDS[1], 'available', null],
      [DIDS[2], 'available', null],
      [DIDS[3], 'retired', null],
    ]);
    // A provider's export, followed: the same plan and summary.
    const exported = join(suite.dir, 'export.json');
    writeFileSync(exported, JSON.stringify([...DIDS.slice(0, 3), DIDS[4]].map((number) => ({ number }))));
    expect(both('pool', 'sync', exported, '--dry-run').pg).toMatchObject({ dryRun: true, added: 1 });
    expect(both('pool', 'sync', exported).pg).toMatchObject({ dryRun: false, added: 1, retired: 0 });
    expect((await client.query('SELECT state FROM pool_number WHERE number = $1', [DIDS[4]])).rows).toEqual([{ state: 'available' }]);
    const text = onPg('pool', 'list');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.split('\n')[0]).toMatch(/^NUMBER +COUNTRY +STATE +ADDED +PIN +OUT OF SESSION +DESK$/);
  }, 90_000);

  it('bad pool input is refused alike, with nothing written to PostgreSQL', async () => {
    const before = await rows();
    refusedAlike('VNUM_INVALID_NUMBER', 'pool', 'add', DIDS[4]!, 'not-a-number');
    refusedAlike('VNUM_NOT_IN_POOL', 'pool', 'retire', DIDS[9]!);
    refusedAlike('VNUM_NOT_IN_POOL', 'pool', 'set', DIDS[9]!, '--pin', 'all');
    refusedAlike('VNUM_INVALID_ARGUMENT', 'pool', 'set', DIDS[0]!, '--pin', 'sometimes');
    refusedAlike('VNUM_POOL_CONFLICT', 'pool', 'set', DIDS[0]!, '--out-of-session', 'fallback', '--fallback', DIDS[1]!);
    expect(await rows()).toBe(before);
  }, 90_000);

  it('session create (PINs shown), show, list, release: the same answers as on a file, the rows in PostgreSQL', async () => {
    const created = both('session', 'create', 'o1', A, B, '--ttl', '1h');
    expect(created.pg.created).toBe(true);
    const [first, second] = created.pg.parties as Array<{ number: string; maskedAs: string; pin: string }>;
    expect([first!.number, second!.number]).toEqual([A, B]);
    for (const party of [first!, second!]) expect(party.pin).toMatch(/^\d{4,}$/); // shown once, at creation
    const { rows: session } = await client.query('SELECT id, first_party, first_masked_as, second_party, second_masked_as, released_at FROM session');
    expect(session).toEqual([{ id: 'o1', first_party: A, first_masked_as: first!.maskedAs, second_party: B, second_masked_as: second!.maskedAs, released_at: null }]);
    const { rows: bridges } = await client.query('SELECT caller, dialled FROM bridge ORDER BY caller');
    expect(bridges).toEqual([
      { caller: A, dialled: second!.maskedAs },
      { caller: B, dialled: first!.maskedAs },
    ]);
    expect((await client.query('SELECT count(*)::int AS n FROM pin')).rows).toEqual([{ n: 2 }]);
    // A retry of the same request: the session, unchanged, without PINs.
    const again = both('session', 'create', 'o1', A, B, '--ttl', '1h');
    expect(again.pg.created).toBe(false);
    expect(again.pg.parties.map((p: { maskedAs: string }) => p.maskedAs)).toEqual([first!.maskedAs, second!.maskedAs]);
    const text = onPg('session', 'create', 'o1', A, B, '--ttl', '1h');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^session o1 already exists for this request: unchanged\nsession o1: active\n/);

    const shown = both('session', 'show', 'o1');
    expect(shown.pg.parties).toEqual([{ number: A, maskedAs: first!.maskedAs }, { number: B, maskedAs: second!.maskedAs }]);
    expect(shown.pg.state).toBe('active');
    const listed = both('session', 'list', '--party', A);
    expect(listed.pg.map((s: { id: string }) => s.id)).toEqual(['o1']);
    expect(both('session', 'list', '--state', 'grace').pg).toEqual([]);

    const released = both('session', 'release', 'o1', '--grace', '0s');
    expect(released.pg).toMatchObject({ id: 'o1', state: 'ended', changed: true });
    const { rows: after } = await client.query('SELECT released_at::bigint AS released, ends_at::bigint AS ends FROM session WHERE id = $1', ['o1']);
    expect(Number(after[0].released)).toBeGreaterThan(0);
    expect(Number(after[0].ends)).toBe(Number(after[0].released));
    const { rows: ended } = await client.query('SELECT count(*)::int AS n FROM bridge WHERE ends_at > $1', [Date.now()]);
    expect(ended).toEqual([{ n: 0 }]);
    expect(both('session', 'release', 'o1').pg.changed).toBe(false);
  }, 90_000);

  it('bad session input is refused alike, with nothing written; release --hangup in cluster mode writes the request on the session and answers without counts', async () => {
    expect(onPg('session', 'create', 'o2', A, C, '--ttl', '1h').code).toBe(0);
    const before = await rows();
    refusedAlike('VNUM_INVALID_NUMBER', 'session', 'create', 'o3', A, 'not-a-number');
    refusedAlike('VNUM_INVALID_ARGUMENT', 'session', 'create', 'o3', A, C, '--ttl', 'forever');
    refusedAlike('VNUM_SESSION_NOT_FOUND', 'session', 'show', 'nope');
    refusedAlike('VNUM_SESSION_NOT_FOUND', 'session', 'release', 'nope');
    // o1 exists with other parties on both: the same id for another request is a conflict.
    refusedAlike('VNUM_SESSION_CONFLICT', 'session', 'create', 'o1', A, C);
    expect(await rows()).toBe(before);
    // --hangup: released, the request on the session's row (the nodes' vnum serve apply it); no counts, no wait.
    const before2 = Date.now();
    const hangup = onPg('session', 'release', 'o2', '--hangup', '--grace', '0s', '--json');
    expect(hangup.code, hangup.stderr).toBe(0);
    const answer = JSON.parse(hangup.stdout);
    expect(answer).toMatchObject({ id: 'o2', state: 'ended', changed: true, hangup: { requested: null, ended: null } });
    expect(Object.keys(answer.hangup).sort()).toEqual(['ended', 'requested', 'requestedAt']);
    const { rows: asked } = await client.query<{ released_at: string; hangup_requested_at: string }>("SELECT released_at, hangup_requested_at FROM session WHERE id = 'o2'");
    expect(Number(asked[0]!.hangup_requested_at)).toBe(Date.parse(answer.hangup.requestedAt));
    expect(Number(asked[0]!.hangup_requested_at)).toBe(Number(asked[0]!.released_at));
    expect(Number(asked[0]!.hangup_requested_at)).toBeGreaterThanOrEqual(before2);
    const text = onPg('session', 'release', 'o2', '--hangup');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^session o2 is ended .*: unchanged\nhang-up requested at .*: each PBX node's vnum serve hangs up its calls of this session that started by then/);
  }, 90_000);
});
