/**
 * A cluster node's faces without PostgreSQL (test/cluster/ has them with
 * one): `vnum replica`'s and `vnum cluster`'s settings, judged before a file
 * is opened; serve's freshness settings; the freshness judgement; the health
 * row the replica process writes and serve's gate reads; a replica file
 * refusing local writes (the unit: ship-systemd-replica.test.ts).
 */
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { vnum } from '../support/cli.js';
import { judgeFreshness, type FreshnessPolicy } from '../../src/replica/freshness.js';
import { createFreshnessGate } from '../../src/replica/gate.js';
import { HealthWriter, readReplicaHealth, type ReplicaHealth } from '../../src/replica/health.js';
import type { ReplicaStatus } from '../../src/replica/consumer.js';
import { openDb } from '../../src/store/db.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-cluster-node-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function oneConfigurationLine(r: { code: number | null; stderr: string }, message: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^vnum: .* \[VNUM_CONFIGURATION\]$/);
  expect(lines[0]!.replace(/^vnum: /, '')).toMatch(message);
}

describe('vnum replica judges every setting before it opens or creates the file', () => {
  const ok = { VNUM_NODE: 'pbx_a', VNUM_AUTHORITY: 'postgres://vnum@127.0.0.1:1/vnum' };
  const cases: Array<[string, string[], Record<string, string | undefined>, RegExp]> = [
    ['no node', [], { ...ok, VNUM_NODE: undefined }, /^--node is missing: this node's name/],
    ['a node name that cannot name a slot', ['--node', 'PBX-A'], ok, /^invalid --node "PBX-A": 1-58 characters of a-z 0-9 _/],
    ['a node name from the environment', [], { ...ok, VNUM_NODE: 'a'.repeat(59) }, /^invalid VNUM_NODE "a{59}"/],
    ['no authority', [], { ...ok, VNUM_AUTHORITY: undefined }, /^--authority is missing: the authority's address/],
    ['an authority that is not a URL', [], { ...ok, VNUM_AUTHORITY: '10.0.0.5' }, /^invalid VNUM_AUTHORITY "10\.0\.0\.5": not a URL/],
    ['another scheme', ['--authority', 'mysql://u@h/db'], ok, /the scheme must be postgres:\/\//],
    ['a password in the URL, never echoed', ['--authority', 'postgres://vnum:s3cret@h/db'], ok, /^invalid --authority "postgres:\/\/vnum:\*\*\*@h\/db": a password in the URL/],
    ['no user', ['--authority', 'postgres://h/db'], ok, /no user/],
    ['no database', ['--authority', 'postgres://u@h'], ok, /no database/],
    ['a ping of nothing', ['--ping', '0ms'], ok, /^invalid --ping "0ms": from 100ms to 10s/],
    ['a link timeout a ping tick could never judge', ['--ping', '2s', '--link-timeout', '3s'], ok, /^invalid --link-timeout "3s": at least twice --ping \(4s\)/],
    ['a link timeout past its bound', ['--link-timeout', '1h'], ok, /^invalid --link-timeout "1h": from 1s to 120s/],
    ['a command timeout of a day', ['--command-timeout', '1d'], ok, /^invalid --command-timeout "1d"/],
    ['a report interval in no unit', ['--report-every', '5'], ok, /^invalid --report-every "5": use a whole number and a unit/],
    ['a metrics port of 0', ['--metrics-port', '0'], ok, /^invalid --metrics-port "0": a whole number from 1 to 65535/],
    ['a metrics host from the environment that is no address', [], { ...ok, VNUM_REPLICA_METRICS_PORT: '9476', VNUM_REPLICA_METRICS_HOST: 'a b' }, /^invalid VNUM_REPLICA_METRICS_HOST "a b"/],
  ];
  it.each(cases)('%s: exit 1, one line, VNUM_CONFIGURATION, no file', (_what, args, env, message) => {
    const nested = join(dir, 'not-yet', 'vnum.db');
    oneConfigurationLine(vnum(['--db', nested, 'replica', ...args], env), message);
    expect(existsSync(join(dir, 'not-yet'))).toBe(false);
  });
});

describe('vnum replica --metrics-port', () => {
  it('a taken port stops the start with VNUM_LISTEN_FAILED before the file is created or the authority reached', async () => {
    const { createServer } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as { port: number }).port;
      const db = join(dir, 'vnum.db');
      const r = vnum(['--db', db, 'replica', '--metrics-port', String(port)], { VNUM_NODE: 'pbx_a', VNUM_AUTHORITY: 'postgres://vnum@127.0.0.1:1/vnum' });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^vnum: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.* \\[VNUM_LISTEN_FAILED\\]\\n$`));
      expect(existsSync(db)).toBe(false);
    } finally {
      taken.close();
    }
  });
});

describe('vnum serve: the freshness settings', () => {
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['a policy that is neither', ['--when-stale', 'route'], {}, /^invalid --when-stale "route": one of keep-routing, fail-closed/],
    ['a policy from the environment', [], { VNUM_WHEN_STALE: 'FAIL-CLOSED' }, /^invalid VNUM_WHEN_STALE "FAIL-CLOSED"/],
    ['a bound below the replica link timeout', [], { VNUM_STALE_AFTER: '500ms' }, /^invalid VNUM_STALE_AFTER "500ms": from 1s to 86400s/],
    ['a bound past a day', ['--stale-after', '2d'], {}, /^invalid --stale-after "2d": from 1s to 86400s/],
  ];
  it.each(cases)('%s: exit 1, one line, VNUM_CONFIGURATION, no database', (_what, args, env, message) => {
    const nested = join(dir, 'not-yet', 'vnum.db');
    oneConfigurationLine(vnum(['--db', nested, 'serve', '--port', '45731', ...args], env), message);
    expect(existsSync(join(dir, 'not-yet'))).toBe(false);
  });
});

describe('vnum cluster', () => {
  it('an authority that refuses the connection: VNUM_AUTHORITY_UNAVAILABLE, exit 2, naming it without a password', () => {
    const r = vnum(['cluster', 'status', '--authority', 'postgres://vnum@127.0.0.1:1/vnum']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^vnum: cannot reach the authority vnum@127\.0\.0\.1:1\/vnum: .*ECONNREFUSED.* \[VNUM_AUTHORITY_UNAVAILABLE\]\n$/);
  });
  it('status and migrate judge their settings first', () => {
    oneConfigurationLine(vnum(['cluster', 'status', '--authority', 'postgres://u@h/db', '--stale-after', '0s']), /^invalid --stale-after "0s"/);
    oneConfigurationLine(vnum(['cluster', 'migrate'], { VNUM_AUTHORITY: 'postgres://u:pw@h/db' }), /^invalid VNUM_AUTHORITY "postgres:\/\/u:\*\*\*@h\/db"/);
  });
});

const health = (freshAt: number | null, node = 'pbx_a'): ReplicaHealth => ({
  node,
  pid: 1,
  phase: 'streaming',
  freshAt,
  lastContactAt: freshAt,
  lagBytes: 0,
  lastError: null,
  updatedAt: freshAt ?? 0,
});

describe('the freshness judgement', () => {
  const keep: FreshnessPolicy = { whenStale: 'keep-routing', staleAfterMs: 10_000 };
  const closed: FreshnessPolicy = { whenStale: 'fail-closed', staleAfterMs: 10_000 };
  it('a single box (no health row): keep-routing does not apply; fail-closed refuses, having no evidence of freshness', () => {
    expect(judgeFreshness(undefined, 1_000, keep)).toEqual({ replica: false, ageMs: null, stale: false, refusal: undefined });
    expect(judgeFreshness(undefined, 1_000, closed)).toMatchObject({ replica: false, stale: true, refusal: expect.stringMatching(/no replica process has ever reported/) });
  });
  it('fresh within the bound, stale past it; only fail-closed refuses', () => {
    expect(judgeFreshness(health(100_000), 110_000, closed)).toMatchObject({ replica: true, ageMs: 10_000, stale: false, refusal: undefined });
    expect(judgeFreshness(health(100_000), 110_001, keep)).toMatchObject({ stale: true, refusal: undefined });
    expect(judgeFreshness(health(100_000), 110_001, closed).refusal).toBe(
      'the replica of node pbx_a is stale (last fresh 10001 ms ago, bound 10000 ms) and the policy is fail-closed',
    );
    expect(judgeFreshness(health(null), 5, closed)).toMatchObject({ stale: true, ageMs: null, refusal: expect.stringMatching(/never caught up/) });
  });
});

const status = (over: Partial<ReplicaStatus>): ReplicaStatus => ({
  node: 'pbx_a',
  slot: 'vnum_pbx_a',
  phase: 'streaming',
  appliedLsn: '0/10',
  appliedCommitAt: null,
  builtAt: null,
  serverWalEnd: '0/10',
  lagBytes: 0,
  lastContactAt: null,
  caughtUpAt: null,
  lagMs: null,
  stale: false,
  lastError: null,
  lastErrorAt: null,
  transactions: 0,
  changes: 0,
  skipped: 0,
  connects: 0,
  rebuilds: 0,
  ...over,
});

describe('the health row', () => {
  it('fresh_at never moves back: a restarted replica process that has not heard yet keeps what the file holds', () => {
    const db = openDb(join(dir, 'n.db'));
    try {
      expect(readReplicaHealth(db)).toBeUndefined();
      const writer = new HealthWriter(db);
      writer.write(status({ caughtUpAt: 5_000, lastContactAt: 5_000 }), 5_001);
      writer.write(status({ phase: 'connecting', caughtUpAt: null, lastContactAt: null, lastError: 'x'.repeat(900) }), 9_000);
      const row = readReplicaHealth(db)!;
      expect(row).toMatchObject({ node: 'pbx_a', phase: 'connecting', freshAt: 5_000, lastContactAt: 5_000, updatedAt: 9_000, pid: process.pid });
      expect(row.lastError).toHaveLength(500);
      writer.write(status({ caughtUpAt: 4_000 }), 9_500);
      expect(readReplicaHealth(db)!.freshAt).toBe(5_000);
      // Another node's name (the file was handed to another node): its own history, not this one's.
      writer.write(status({ node: 'pbx_b', caughtUpAt: null }), 9_600);
      expect(readReplicaHealth(db)).toMatchObject({ node: 'pbx_b', freshAt: null });
    } finally {
      db.close();
    }
  });
});

describe("serve's freshness gate", () => {
  function logLines(): { logger: pino.Logger; lines: Array<{ msg: string }> } {
    const lines: Array<{ msg: string }> = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as { msg: string }) });
    return { logger, lines };
  }

  it('reads the row at most every readEveryMs, refuses only under fail-closed past the bound, and logs each change once', () => {
    const path = join(dir, 'n.db');
    const db = openDb(path);
    const writer = new HealthWriter(db);
    writer.write(status({ caughtUpAt: 1_000 }), 1_000);
    let t = 1_000;
    const { logger, lines } = logLines();
    const gate = createFreshnessGate({ dbPath: path, policy: { whenStale: 'fail-closed', staleAfterMs: 2_000 }, logger, now: () => t, readEveryMs: 100 });
    try {
      expect(gate.refusal()).toBeUndefined();
      t = 3_001;
      expect(gate.refusal()).toMatch(/stale \(last fresh 2001 ms ago, bound 2000 ms\)/);
      for (let i = 0; i < 10; i++) gate.refusal();
      writer.write(status({ caughtUpAt: 3_050 }), 3_050);
      t = 3_060; // within readEveryMs of the last read: the old row still judges
      expect(gate.refusal()).toBeDefined();
      t = 3_101;
      expect(gate.refusal()).toBeUndefined();
      expect(lines.map((l) => l.msg)).toEqual(['replica stale: refusing every call (fail-closed)', 'replica fresh again']);
    } finally {
      gate.close();
      db.close();
    }
  });

  it('keep-routing never refuses, stale or not; a single box logs that it is one', () => {
    const path = join(dir, 'single.db');
    openDb(path).close();
    const { logger, lines } = logLines();
    const gate = createFreshnessGate({ dbPath: path, policy: { whenStale: 'keep-routing', staleAfterMs: 1_000 }, logger, now: () => 1e12 });
    expect(gate.refusal()).toBeUndefined();
    expect(gate.freshness()).toMatchObject({ replica: false, stale: false });
    gate.close();
    expect(lines.map((l) => l.msg)).toEqual(['single box: no replica process reports into this file']);
  });
});

describe("a node's replica file refuses every local write, and still reads", () => {
  const A = '+447911000001';
  const D = '+447911000002';
  const POOL = ['+442079460001', '+442079460002', '+442079460003'];

  /** Every row of every table, but the health row (written by the replica process, never by these commands). */
  function contents(db: string): string {
    const file = openDb(db, { readonly: true });
    try {
      const tables = file.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all();
      return JSON.stringify(tables.filter((t) => t.name !== 'replica_health').map((t) => [t.name, file.prepare(`SELECT * FROM "${t.name}"`).raw().all()]), (_k, v: unknown) =>
        Buffer.isBuffer(v) ? v.toString('hex') : typeof v === 'bigint' ? String(v) : v,
      );
    } finally {
      file.close();
    }
  }

  // A file with a pool, a session and a key, made once through the CLI; each test claims a copy of it.
  let template = '';
  let templateDir = '';
  beforeAll(() => {
    templateDir = mkdtempSync(join(tmpdir(), 'vnum-replica-template-'));
    template = join(templateDir, 'vnum.db');
    const run = (...args: string[]) => {
      const r = vnum(['--db', template, ...args], { VNUM_DEFAULT_COUNTRY: 'GB' });
      expect(r.code, r.stderr).toBe(0);
    };
    run('pool', 'add', ...POOL);
    run('session', 'create', 'o1', A, D);
    run('apikey', 'create', '--name', 'orders', '--scope', 'read');
  }, 60_000);
  afterAll(() => rmSync(templateDir, { recursive: true, force: true }));

  /** A copy of the template claimed by a replica process: reported into, and/or built. */
  function replicaFile(claim: 'reported' | 'built' | 'both'): string {
    const db = join(dir, `${claim}.db`);
    copyFileSync(template, db);
    const file = openDb(db);
    try {
      if (claim !== 'built') new HealthWriter(file).write({ node: 'pbx_a', phase: 'streaming', caughtUpAt: Date.now(), lastContactAt: Date.now(), lagBytes: 0, lastError: null } as ReplicaStatus);
      if (claim !== 'reported') {
        file
          .prepare(
            `INSERT INTO replica_state (id, system_id, database, slot, publication, tables, built_lsn, built_at, applied_lsn)
             VALUES (1, '7300000000000000001', 'vnum', 'vnum_pbx_a', 'vnum_replica', '["pool_number","session","bridge","meta"]', '0/1000000', 1, '0/1000000')`,
          )
          .run();
      }
    } finally {
      file.close();
    }
    return db;
  }

  const writes: Array<[string, string[]]> = [
    ['session create', ['session', 'create', 'o2', '+447911000003', '+447911000004']],
    ['session release', ['session', 'release', 'o1']],
    ['pool add', ['pool', 'add', '+442079460009']],
    ['pool import', ['pool', 'import', '<csv>']],
    ['pool set', ['pool', 'set', POOL[0]!, '--pin', 'off']],
    ['pool retire', ['pool', 'retire', POOL[2]!]],
    ['pool sync', ['pool', 'sync', '<csv>', '--retire-missing']],
    ['apikey create', ['apikey', 'create', '--name', 'other', '--scope', 'read']],
    ['apikey revoke', ['apikey', 'revoke', 'orders']],
    ['webhooks enable', ['webhooks', 'enable']],
    ['webhooks disable', ['webhooks', 'disable']],
    ['webhooks retry', ['webhooks', 'retry', '--all']],
    ['webhooks discard', ['webhooks', 'discard', '--all']],
    ['webhooks deliver', ['webhooks', 'deliver', '--allow-local']],
    // Refused before it listens (a bug here would start it: the 30 s timeout of vnum() would then fail the test).
    ['api', ['api', '--host', '127.0.0.1', '--port', '47999']],
  ];

  it.each(writes)('vnum %s: VNUM_REPLICA_READ_ONLY, exit 1, one line naming the node and the authority, nothing written', (what, args) => {
    const db = replicaFile('both');
    const csv = join(dir, 'numbers.csv');
    writeFileSync(csv, 'number\n+442079460008\n');
    const before = contents(db);
    const receiver = { VNUM_WEBHOOK_URL: 'http://127.0.0.1:9/hooks', VNUM_WEBHOOK_SECRET: '0123456789abcdef0123456789abcdef' };
    const r = vnum(['--db', db, ...args.map((a) => (a === '<csv>' ? csv : a))], { VNUM_DEFAULT_COUNTRY: 'GB', ...receiver });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe(
      `vnum: ${db} is the replica of cluster node pbx_a, written only by vnum replica: vnum ${what} writes on the authority (PostgreSQL database vnum), ` +
        `through vnum ${/^(apikey|session|pool|webhooks)/.test(what) ? what : 'api'} --authority, not in this file (reading it still works) [VNUM_REPLICA_READ_ONLY]`,
    );
    expect(contents(db)).toBe(before);
  });

  it('with --authority, vnum api, apikey, session, pool and webhooks write on PostgreSQL: a replica file at --db is not theirs to refuse', () => {
    const db = replicaFile('both');
    const before = contents(db);
    const authority = 'postgres://vnum@127.0.0.1:1/vnum'; // nothing listens there: each gets as far as reaching for it
    for (const args of [
      ['api', '--authority', authority, '--host', '127.0.0.1', '--port', '47999'],
      ['apikey', 'create', '--authority', authority, '--name', 'other', '--scope', 'read'],
      ['apikey', 'revoke', '--authority', authority, 'orders'],
      ['session', 'create', '--authority', authority, 'o2', '+447911000003', '+447911000004'],
      ['session', 'release', '--authority', authority, 'o1'],
      ['pool', 'add', '--authority', authority, '+442079460009'],
      ['pool', 'set', '--authority', authority, POOL[0]!, '--pin', 'off'],
      ['pool', 'retire', '--authority', authority, POOL[2]!],
      ['webhooks', 'enable', '--authority', authority],
      ['webhooks', 'discard', '--authority', authority, '--all'],
      ['webhooks', 'status', '--authority', authority],
    ]) {
      const r = vnum(['--db', db, ...args], { VNUM_DEFAULT_COUNTRY: 'GB' });
      expect(r.stderr, args.join(' ')).toMatch(/the authority vnum@127\.0\.0\.1:1\/vnum cannot be reached: .*\[VNUM_AUTHORITY_UNAVAILABLE\]/);
      expect(r.code, args.join(' ')).toBe(2);
    }
    expect(contents(db)).toBe(before);
  });

  it('a file only reported into (never built), or only built, is a replica too; a single box is not', () => {
    for (const [claim, node, authority] of [
      ['reported', 'cluster node pbx_a', 'the authority (PostgreSQL)'],
      ['built', 'a cluster node', 'the authority (PostgreSQL database vnum)'],
    ] as const) {
      const db = replicaFile(claim);
      const r = vnum(['--db', db, 'pool', 'add', '+442079460009']);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(`is the replica of ${node}, written only by vnum replica: vnum pool add writes on ${authority},`);
    }
    const single = join(dir, 'single.db');
    expect(vnum(['--db', single, 'pool', 'add', '+442079460009']).code).toBe(0);
  });

  it('reads work on it: pool list, session show and list, route, stats, apikey list, webhooks status, calls', () => {
    const db = replicaFile('both');
    const before = contents(db);
    const read = (...args: string[]) => {
      const r = vnum(['--db', db, ...args], { VNUM_DEFAULT_COUNTRY: 'GB' });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    expect(JSON.parse(read('pool', 'list', '--json'))).toHaveLength(3);
    const session = JSON.parse(read('session', 'show', 'o1', '--json')) as { id: string; parties: Array<{ maskedAs: string }> };
    expect(session.id).toBe('o1');
    expect(read('session', 'list')).toContain('o1');
    expect(JSON.parse(read('route', A, session.parties[0]!.maskedAs, '--json'))).toMatchObject({ status: 'BRIDGE', target: D });
    expect(JSON.parse(read('stats', '--json'))).toMatchObject({ sessions: { active: 1 } });
    expect(read('apikey', 'list')).toContain('orders');
    read('webhooks', 'status');
    read('calls');
    // A sync's dry run writes nothing: allowed.
    const csv = join(dir, 'numbers.csv');
    writeFileSync(csv, `number\n${POOL.join('\n')}\n`);
    read('pool', 'sync', csv, '--dry-run');
    expect(contents(db)).toBe(before);
  });
});
