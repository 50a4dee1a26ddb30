/**
 * Issue 15's replica when the authority is away or has given up on a node:
 * PostgreSQL stopped (cleanly, and crashed) while a node follows it: the
 * replica stays readable and the router's code routes from it, the node
 * reconnects by itself when PostgreSQL returns and ends equal to it; a node
 * whose slot was invalidated past max_slot_wal_keep_size while it was down
 * rebuilds from a snapshot; a connected, idle node advances its slot from
 * keepalives so that WAL written for other tables never invalidates it;
 * a server that stops answering in the middle of a snapshot copy (its
 * backend frozen with SIGSTOP: no error, no reset, just silence) costs the
 * node the command timeout, not forever.
 * The private cluster runs with 1 MB WAL segments and
 * max_slot_wal_keep_size = 8MB (harness/pg.ts).
 */
import { join } from 'node:path';
import type pg from 'pg';
import { expect, it } from 'vitest';
import type { PgTarget } from '../../src/replica/stream.js';
import { audit, barrier, counterHistoryProblems, routeFrom, sleep } from '../support/cluster/checks.js';
import { startNode, type NodeConfig } from '../support/cluster/node.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { seedSessions, Writer } from '../support/cluster/writer.js';

clusterSuite('a node replica when PostgreSQL is away or its slot is gone', (env) => {
  async function authority(): Promise<{ target: PgTarget; client: pg.Client }> {
    const made = await env.authority();
    // Unpublished: WAL the nodes' slots must not be held back by.
    await made.client.query('CREATE TABLE filler (x text)');
    return made;
  }

  /** About `mb` MB of WAL for the unpublished table. */
  async function unrelatedWal(client: pg.Client, mb: number): Promise<void> {
    await client.query(`INSERT INTO filler SELECT repeat(md5(g::text), 32) FROM generate_series(1, ${Math.round(mb * 850)}) g`);
  }

  async function slotState(client: pg.Client, slot: string): Promise<{ wal_status: string | null; confirmed: string | null }> {
    const { rows } = await client.query<{ wal_status: string | null; confirmed: string | null }>(
      'SELECT wal_status, confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    return rows[0]!;
  }

  function node(target: PgTarget, name: string): NodeConfig {
    return { db: join(env.dir, `${name}.db`), target, node: name, statusEveryMs: 100, pingIntervalMs: 300, staleAfterMs: 1_500, retryMaxMs: 1_000 };
  }

  for (const mode of ['fast', 'immediate'] as const) {
    it(`PostgreSQL stopped (${mode === 'fast' ? 'cleanly' : 'crashed'}): the replica stays readable and routes; the node reconnects by itself and catches up`, async () => {
      const { target, client } = await authority();
      const writer = new Writer(client, `stop-${mode}`, 0);
      const config = node(target, `stop_${mode}`);
      const replica = startNode(config);
      try {
        for (let i = 0; i < 100; i++) await writer.next();
        const session = await writer.createOne();
        await barrier(client, [config.db]);
        await client.end();

        env.cluster.stopServer(mode);
        const down = await replica.waitForStatus((s) => s.stale && s.lastError !== null, 10_000, 'noticing PostgreSQL is gone');
        expect(down.phase).not.toBe('streaming');
        // The router's own decision code reads the replica while the authority is away.
        expect(routeFrom(config.db, session.first, session.secondMaskedAs)).toMatchObject({ status: 'BRIDGE', session: session.id });
        await sleep(2_000);
        const stillDown = replica.status()!;
        expect(stillDown.connects).toBe(1);
        expect(stillDown.lastError).toMatch(/ECONNREFUSED|terminat|connect/i);

        await env.cluster.startServer();
        const back = env.cluster.client(target);
        await back.connect();
        const again = new Writer(back, `stop-${mode}-again`, 300_000);
        for (let i = 0; i < 100; i++) await again.next();
        await barrier(back, [config.db]);
        const status = await replica.waitForStatus((s) => s.phase === 'streaming', 10_000, 'streaming again');
        expect(status.connects).toBeGreaterThanOrEqual(2);
        expect(status.rebuilds).toBe(1);
        const report = await audit(target, config.db);
        expect(report.equal, report.text).toBe(true);
        expect(counterHistoryProblems(config.db).problems).toEqual([]);
        await back.end();
      } finally {
        await replica.stop();
      }
    });
  }

  it('a slot invalidated past max_slot_wal_keep_size while the node was down: the node rebuilds from a snapshot', async () => {
    const { target, client } = await authority();
    const writer = new Writer(client, 'lost', 0);
    const config = node(target, 'lost');
    let replica = startNode(config);
    for (let i = 0; i < 100; i++) await writer.next();
    await barrier(client, [config.db]);
    await replica.stop();

    for (let i = 0; i < 50; i++) await writer.next();
    await unrelatedWal(client, 12);
    await client.query('CHECKPOINT');
    let state = await slotState(client, 'vnum_lost');
    for (let i = 0; i < 20 && state.wal_status !== 'lost'; i++) {
      await unrelatedWal(client, 2);
      await client.query('CHECKPOINT');
      state = await slotState(client, 'vnum_lost');
    }
    expect(state.wal_status).toBe('lost');
    for (let i = 0; i < 50; i++) await writer.next();

    replica = startNode(config);
    try {
      await barrier(client, [config.db]);
      expect(replica.events.find((e) => e.type === 'rebuilding')).toMatchObject({ reason: expect.stringMatching(/invalidated .*max_slot_wal_keep_size/) });
      expect(replica.events.filter((e) => e.type === 'rebuilt')).toHaveLength(1);
      const report = await audit(target, config.db);
      expect(report.equal, report.text).toBe(true);
      expect((await slotState(client, 'vnum_lost')).wal_status).toBe('reserved');
      const history = counterHistoryProblems(config.db);
      expect(history).toMatchObject({ problems: [], builds: 2 });
    } finally {
      await replica.stop();
      await client.end();
    }
  });

  it('a server that stops answering mid-copy: the node gives up after its command timeout and copies again', async () => {
    const { target, client } = await authority();
    await seedSessions(client, 50_000);
    const config = { ...node(target, 'frozen'), commandTimeoutMs: 2_000 };
    const replica = startNode(config);
    let frozen: number | undefined;
    try {
      for (let i = 0; i < 500 && frozen === undefined; i++) {
        const { rows } = await client.query<{ pid: number }>(
          "SELECT pid FROM pg_stat_activity WHERE application_name = 'vnum-replica-frozen-copy' AND state <> 'idle'",
        );
        if (rows[0]) {
          frozen = rows[0].pid;
          process.kill(frozen, 'SIGSTOP');
        } else await sleep(10);
      }
      expect(frozen, 'the copy was never seen running').toBeDefined();
      await replica.waitForStatus((s) => s.phase === 'streaming', 60_000, 'streaming after a second copy');
      const timedOut = replica.events.find((e) => e.type === 'disconnected');
      expect(timedOut).toMatchObject({ error: 'Query read timeout' });
      expect(replica.events.filter((e) => e.type === 'rebuilt')).toHaveLength(1);
      await barrier(client, [config.db]);
      const report = await audit(target, config.db);
      expect(report.equal, report.text).toBe(true);
      expect(report.tables.find((t) => t.table === 'bridge')!.authority).toBe(100_000);
    } finally {
      if (frozen !== undefined) process.kill(frozen, 'SIGCONT');
      await replica.stop();
      await client.end();
    }
    // Two copies of 100,000 bridges plus an audit: seconds on a quiet machine, far more on a shared, loaded one.
  }, 90_000);

  it('a connected node with nothing to apply advances its slot from keepalives: WAL for other tables never invalidates it', async () => {
    const { target, client } = await authority();
    const config = node(target, 'idle');
    const replica = startNode(config);
    try {
      await replica.waitForStatus((s) => s.phase === 'streaming', 20_000, 'streaming');
      const start = (await slotState(client, 'vnum_idle')).confirmed;
      // Twice the slot's limit, in steps, each followed by a checkpoint (which is when PostgreSQL invalidates slots).
      for (let i = 0; i < 8; i++) {
        await unrelatedWal(client, 2);
        await sleep(700);
        await client.query('CHECKPOINT');
        expect((await slotState(client, 'vnum_idle')).wal_status, `after ${2 * (i + 1)} MB`).not.toBe('lost');
      }
      const end = await slotState(client, 'vnum_idle');
      expect(end.wal_status).toBe('reserved');
      expect(end.confirmed).not.toBe(start);
      expect(replica.events.some((e) => e.type === 'rebuilding' && !/never been built/.test(e.reason))).toBe(false);
      const status = replica.status()!;
      expect(status).toMatchObject({ phase: 'streaming', transactions: 0, rebuilds: 1 });
      expect(status.appliedLsn).toBe(status.serverWalEnd);
      // Still following: a write now arrives.
      const writer = new Writer(client, 'idle', 0);
      await writer.createOne();
      await barrier(client, [config.db]);
      expect((await audit(target, config.db)).equal).toBe(true);
    } finally {
      await replica.stop();
      await client.end();
    }
  });
});
