/**
 * Issue 15's replica pipeline against a real PostgreSQL 15 (a private
 * cluster per run, deploy/postgres/private-cluster.sh): a node builds its
 * SQLite replica from a consistent snapshot while a writer commits, follows
 * its slot, and ends equal to the authority row by row; a wiped file, a file
 * from another cluster and a table that joins the publication rebuild; a
 * column the node's schema lacks stops the replica with a clear error until
 * the node is upgraded; the router's own decision code reads the replica;
 * `vnum serve` routes from the old rows while a lost slot's node rebuilds.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { migratePg } from '../../src/store/pg/migrate.js';
import { PG_MIGRATIONS } from '../../src/store/pg/migrations.js';
import { openDb } from '../../src/store/db.js';
import type { PgTarget } from '../../src/replica/stream.js';
import { audit, barrier, counterHistoryProblems, routeFrom, sleep } from '../support/cluster/checks.js';
import { startNode, type NodeConfig } from '../support/cluster/node.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { BIG, seedSessions, Writer } from '../support/cluster/writer.js';
import { routeCall } from '../reliability/lib.js';
import { startServe } from '../support/serve.js';

clusterSuite('a node replica fed by logical replication', (env) => {
  const authority = env.authority;

  function node(target: PgTarget, name: string, extra: Partial<NodeConfig> = {}): NodeConfig {
    return { db: join(env.dir, `${name}.db`), target, node: name, statusEveryMs: 100, ...extra };
  }

  it('builds from a snapshot taken while a writer commits, follows the slot, and ends equal row by row', async () => {
    const { target, client } = await authority();
    const writer = new Writer(client, 'snap', 0);
    for (let i = 0; i < 300; i++) await writer.next();

    let writing = true;
    const written = writer.run(100, () => !writing);
    written.catch(() => {}); // awaited below; a failure before then must not surface as unhandled
    const config = node(target, 'snap');
    const replica = startNode(config);
    try {
      await replica.waitForStatus((s) => s.phase === 'streaming' && s.transactions > 20, 20_000, 'streaming with transactions applied');
      await sleep(500);
      writing = false;
      await written;
      const session = await writer.createOne();
      await barrier(client, [config.db]);

      const report = await audit(target, config.db);
      expect(report.equal, report.text).toBe(true);
      expect(report.tables.map((t) => t.table)).toEqual(['bridge', 'meta', 'pin', 'pin_key', 'pool_number', 'session']);
      expect(report.tables.find((t) => t.table === 'session')!.authority).toBeGreaterThan(200);

      const history = counterHistoryProblems(config.db);
      expect(history.problems).toEqual([]);
      expect(history.builds).toBe(1);
      expect(history.entries).toBeGreaterThan(20);

      const rebuilt = replica.events.filter((e) => e.type === 'rebuilt');
      expect(rebuilt).toHaveLength(1);
      expect(replica.events.find((e) => e.type === 'rebuilding')).toMatchObject({ reason: 'the replica has never been built' });

      // The value past 2^53 is exact, and the router's own code routes from the file.
      const db = openDb(config.db, { readonly: true });
      const big = db.prepare("SELECT value FROM meta WHERE key = 'test_big'").safeIntegers(true).pluck().get();
      db.close();
      expect(big).toBe(BIG);
      expect(routeFrom(config.db, session.first, session.secondMaskedAs)).toMatchObject({ status: 'BRIDGE', target: session.second, session: session.id });
      expect(routeFrom(config.db, session.second, session.firstMaskedAs)).toMatchObject({ status: 'BRIDGE', target: session.first, session: session.id });

      const status = await replica.waitForStatus((s) => s.lagBytes === 0 && s.lagMs !== null && s.lagMs < 2_000, 10_000, 'caught up');
      expect(status).toMatchObject({ node: 'snap', slot: 'vnum_snap', phase: 'streaming', stale: false, lastError: null, rebuilds: 1, connects: 1 });
      expect(Date.now() - status.lastContactAt!).toBeLessThan(5_000);
      expect(status.appliedCommitAt).toBeGreaterThan(Date.now() - 60_000);
      expect(status.appliedCommitAt).toBeLessThanOrEqual(Date.now());
    } finally {
      await replica.stop();
      await client.end();
    }
  });

  it('resumes after a clean stop without a copy; a wiped file, or one from another cluster, is rebuilt', async () => {
    const { target, client } = await authority();
    const writer = new Writer(client, 'wipe', 0);
    for (let i = 0; i < 50; i++) await writer.next();
    const config = node(target, 'wipe');

    let replica = startNode(config);
    await replica.waitForStatus((s) => s.phase === 'streaming', 20_000, 'streaming');
    await replica.stop();
    for (let i = 0; i < 50; i++) await writer.next();

    // Resumes from its position: no second copy.
    replica = startNode(config);
    await barrier(client, [config.db]);
    expect(replica.events.some((e) => e.type === 'rebuilding')).toBe(false);
    await replica.stop();
    expect((await audit(target, config.db)).equal).toBe(true);

    // Wiped: the slot is ahead of a file that holds nothing.
    for (const suffix of ['', '-wal', '-shm']) rmSync(config.db + suffix, { force: true });
    replica = startNode(config);
    await barrier(client, [config.db]);
    await replica.stop();
    expect(replica.events.find((e) => e.type === 'rebuilding')).toMatchObject({ reason: 'the replica has never been built' });
    expect((await audit(target, config.db)).equal).toBe(true);

    // A file that claims another PostgreSQL: its positions mean nothing here.
    const db = openDb(config.db);
    db.prepare("UPDATE replica_state SET system_id = '1'").run();
    db.close();
    for (let i = 0; i < 10; i++) await writer.next();
    replica = startNode(config);
    await barrier(client, [config.db]);
    await replica.stop();
    expect(replica.events.find((e) => e.type === 'rebuilding')).toMatchObject({ reason: expect.stringMatching(/built from another PostgreSQL/) });
    const report = await audit(target, config.db);
    expect(report.equal, report.text).toBe(true);
    await client.end();
  });

  it('a column the node lacks stops the replica with a clear error, readable meanwhile; once upgraded, the new column and a new table replicate with no replication code', async () => {
    const { target, client } = await authority();
    const writer = new Writer(client, 'col', 0);
    const config = node(target, 'col');
    const replica = startNode(config);
    try {
      const before = await writer.createOne();
      await barrier(client, [config.db]);

      // The authority moves first: a column on a replicated table, and a new published table (a later branch's migration).
      const next = [
        ...PG_MIGRATIONS,
        `ALTER TABLE session ADD COLUMN note text;
         CREATE TABLE tag (sid bigint PRIMARY KEY REFERENCES session (sid), tag text NOT NULL, tries integer NOT NULL DEFAULT 0, locked boolean NOT NULL DEFAULT false);
         ALTER PUBLICATION vnum_replica ADD TABLE tag;`,
      ];
      await migratePg(client, next);
      await client.query(`UPDATE session SET note = 'vip' WHERE id = $1`, [before.id]);
      const stopped = await replica.waitForStatus((s) => /session\.note/.test(s.lastError ?? ''), 10_000, 'the schema error');
      expect(stopped.lastError).toMatch(/PostgreSQL publishes .*session\.note.*, which this node's SQLite schema lacks: .*upgrade vnum on this node/);
      const appliedThen = stopped.appliedLsn;
      await sleep(1_000);
      expect(replica.status()!.appliedLsn).toBe(appliedThen);
      // Nothing half-applied, and the router still reads the file.
      expect(routeFrom(config.db, before.first, before.secondMaskedAs)).toMatchObject({ status: 'BRIDGE', session: before.id });
      await replica.stop();

      // The node is upgraded (its SQLite migrations gain the same column and table) and restarted.
      const db = openDb(config.db);
      db.exec(`ALTER TABLE session ADD COLUMN note TEXT;
               CREATE TABLE tag (sid INTEGER PRIMARY KEY REFERENCES session (sid), tag TEXT NOT NULL, tries INTEGER NOT NULL DEFAULT 0, locked INTEGER NOT NULL DEFAULT 0);`);
      db.close();
      await client.query(`INSERT INTO tag (sid, tag, tries, locked) SELECT sid, '4711', 2, true FROM session WHERE id = $1`, [before.id]);
      const again = startNode(config);
      try {
        await barrier(client, [config.db]);
        const later = await writer.createOne();
        await client.query(`INSERT INTO tag (sid, tag) SELECT sid, '0042' FROM session WHERE id = $1`, [later.id]);
        await barrier(client, [config.db]);
        // The table joined the publication with rows the slot never sent: the node rebuilt once.
        expect(again.events.find((e) => e.type === 'rebuilding')).toMatchObject({ reason: expect.stringMatching(/publication now has tag/) });
        const report = await audit(target, config.db);
        expect(report.equal, report.text).toBe(true);
        expect(report.tables.map((t) => t.table)).toContain('tag');
        const check = openDb(config.db, { readonly: true });
        expect(check.prepare('SELECT note FROM session WHERE id = ?').pluck().get(before.id)).toBe('vip');
        expect(check.prepare('SELECT tag, tries, locked FROM tag ORDER BY tag').all()).toEqual([
          { tag: '0042', tries: 0, locked: 0 },
          { tag: '4711', tries: 2, locked: 1 },
        ]);
        check.close();
      } finally {
        await again.stop();
      }
    } finally {
      await replica.stop();
      await client.end();
    }
  });
  it("a node whose slot was lost rebuilds in place while vnum serve, on the same file, goes on routing every call from the old rows", async () => {
    const { target, client } = await authority();
    // Enough rows for the copy to take a while: 100,000 sessions, 200,000 bridges.
    await seedSessions(client, 100_000);
    const config = node(target, 'rebuild');
    const first = startNode(config);
    await first.waitForStatus((s) => s.phase === 'streaming', 120_000, 'the first build');
    await first.stop();
    const serve = await startServe({ db: config.db, env: { VNUM_WHEN_STALE: 'keep-routing' } });
    try {
      // The slot is lost (as past max_slot_wal_keep_size; here dropped while the node is away): the node must rebuild.
      await client.query("SELECT pg_drop_replication_slot('vnum_rebuild')");
      const again = startNode(config);
      try {
        const call = (i: number) => ({ caller: `+4478${String(i).padStart(8, '0')}`, target: `+4479${String(i).padStart(8, '0')}`, session: `seed-${i}` });
        let during = 0;
        const answers: string[] = [];
        let slowestMs = 0;
        let i = 0;
        // Route calls until the rebuild is over; count those answered while the node was copying.
        await again.waitForStatus((s) => s.phase === 'copying', 60_000, 'the rebuild to start');
        while (again.status()?.phase !== 'streaming') {
          const c = call((i++ % 100_000) + 1);
          const started = performance.now();
          const { answer } = await routeCall(serve.port, c.caller, '+442079460001');
          slowestMs = Math.max(slowestMs, performance.now() - started);
          if (again.status()?.phase === 'copying') {
            during++;
            if (answer?.status !== 'BRIDGE' || answer.target !== c.target || answer.session !== c.session) answers.push(JSON.stringify(answer));
          }
          if (i > 200_000) throw new Error('the rebuild never ended');
        }
        expect(answers, 'answers during the copy that were not the old bridge').toEqual([]);
        expect(during).toBeGreaterThan(10);
        expect(again.status()).toMatchObject({ rebuilds: 1, phase: 'streaming' });
        expect(again.events.find((e) => e.type === 'rebuilding')).toMatchObject({ reason: 'slot vnum_rebuild does not exist' });
        await barrier(client, [config.db]);
        expect((await audit(target, config.db)).equal).toBe(true);
        console.log(`rebuild of 300,000 rows in place: ${during} calls routed from the old rows during the copy, every one bridged; slowest answer ${slowestMs.toFixed(1)} ms`);
      } finally {
        await again.stop();
      }
    } finally {
      await serve.stop();
      await client.end();
    }
  }, 240_000);
});
