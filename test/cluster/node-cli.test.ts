/**
 * Issue 15's node as an operator runs it: `vnum replica` (the command, its
 * own process, inside a netns host), `vnum serve` routing from the file it
 * fills under each freshness policy, and `vnum cluster status` and
 * `migrate` against the authority. Node A's link is cut: under fail-closed
 * its router refuses every call once the view is older than the bound,
 * under keep-routing (same file, another router) existing sessions go on
 * routing; cluster status shows A falling behind while B stays ok; healed,
 * both routers route everything, the session made during the cut included.
 * A replica process killed outright makes its file stale the same way.
 */
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { readReplicaHealth } from '../../src/replica/health.js';
import type { NodeView } from '../../src/replica/cluster.js';
import type { PgTarget } from '../../src/replica/stream.js';
import { openDb } from '../../src/store/db.js';
import { vnum } from '../support/cli.js';
import { routeCall } from '../reliability/lib.js';
import { startServe, type Serve } from '../support/serve.js';
import { startReplicaCommand, type ReplicaCommand } from '../support/cluster/node.js';
import { audit, barrier, eventually as until, sleep } from '../support/cluster/checks.js';
import type { Host } from '../support/cluster/netns.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { Writer } from '../support/cluster/writer.js';
import { scrape } from '../support/exposition.js';
import { freePort } from '../support/net.js';

const STALE_AFTER_MS = 2_000;

const url = (t: PgTarget, host = t.host): string => `postgres://${t.user}@${host}:${t.port}/${t.database}`;
const quietEnv = { VNUM_LOG_LEVEL: undefined, VNUM_LOG_REDACT: undefined, VNUM_DB: undefined };

/** `vnum replica` inside a host, as its unit runs it. */
function startReplicaCli(host: Host, db: string, node: string, authority: string, env: Record<string, string> = {}): ReplicaCommand {
  return startReplicaCommand(host, db, { VNUM_NODE: node, VNUM_AUTHORITY: authority, ...env }, [
    '--ping', '500ms', '--link-timeout', '2s', '--retry-max', '1s', '--report-every', '1s',
  ]);
}


function health(db: string) {
  try {
    const file = openDb(db, { readonly: true });
    try {
      return readReplicaHealth(file);
    } finally {
      file.close();
    }
  } catch {
    return undefined;
  }
}

function clusterStatusJson(authority: string): { nodes: NodeView[] } {
  const r = vnum(['cluster', 'status', '--json', '--stale-after', '3s'], { ...quietEnv, VNUM_AUTHORITY: authority });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { nodes: NodeView[] };
}

clusterSuite('vnum replica, serve\'s freshness policy and vnum cluster', (env) => {
  it('vnum cluster migrate creates the schema once; status on a cluster with no node says so', async () => {
    const target = await env.cluster.createDatabase();
    const first = vnum(['cluster', 'migrate'], { ...quietEnv, VNUM_AUTHORITY: url(target) });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^migrated the authority .* from schema version 0 to \d+\n$/);
    const again = vnum(['cluster', 'migrate', '--authority', url(target)], quietEnv);
    expect(again.stdout).toMatch(/is at schema version \d+\n$/);
    const status = vnum(['cluster', 'status', '--authority', url(target)], quietEnv);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toBe('no nodes: no vnum_* slot on the authority and no node has reported\n');
    const bare = await env.cluster.createDatabase();
    const unmigrated = vnum(['cluster', 'status', '--authority', url(bare)], quietEnv);
    expect(unmigrated.code).toBe(1);
    expect(unmigrated.stderr).toMatch(/has no vnum schema .*: run vnum cluster migrate \[VNUM_DATABASE_VERSION\]\n$/);
  });

  it('a cut node: fail-closed refuses past the bound, keep-routing routes what it has, status shows it; healed, everything routes', async () => {
    const { target, client } = await env.authority();
    const writer = new Writer(client, 'cli', 0);
    const [hostA, hostB] = env.hosts!.hosts as [Host, Host];
    const dbA = join(env.dir, 'cli-a.db');
    const dbB = join(env.dir, 'cli-b.db');
    const replicas = [startReplicaCli(hostA, dbA, 'cli_a', url(target, hostA.gateway)), startReplicaCli(hostB, dbB, 'cli_b', url(target, hostB.gateway))];
    const serves: Serve[] = [];
    try {
      for (const db of [dbA, dbB]) await until(`${db} streaming`, 30_000, () => (health(db)?.phase === 'streaming' ? true : undefined));
      const policy = (when: string) => ({ env: { VNUM_WHEN_STALE: when, VNUM_STALE_AFTER: `${STALE_AFTER_MS}ms` } });
      const closedA = await startServe({ db: dbA, ...policy('fail-closed') });
      serves.push(closedA);
      const keepA = await startServe({ db: dbA, ...policy('keep-routing') });
      serves.push(keepA);
      const closedB = await startServe({ db: dbB, ...policy('fail-closed') });
      serves.push(closedB);

      const before = await writer.createOne();
      await barrier(client, [dbA, dbB]);
      for (const s of [closedA, keepA, closedB]) {
        expect((await routeCall(s.port, before.first, before.secondMaskedAs)).answer).toMatchObject({ status: 'BRIDGE', session: before.id });
      }
      const ok = await until('both nodes ok in cluster status', 15_000, () => {
        const { nodes } = clusterStatusJson(url(target));
        return nodes.length === 2 && nodes.every((n) => n.state === 'ok') ? nodes : undefined;
      });
      expect(ok.map((n) => n.node)).toEqual(['cli_a', 'cli_b']);
      for (const n of ok) {
        expect(n).toMatchObject({ active: true, phase: 'streaming', walStatus: 'reserved', lastError: null });
        expect(n.slotBytes).toBeGreaterThanOrEqual(0);
        expect(n.lastContactAgoMs!).toBeLessThan(3_000);
      }
      expect(ok.map((n) => n.clientAddress)).toEqual([hostA.address, hostB.address]);

      // The cut.
      const cutAt = Date.now();
      hostA.cut();
      const refusedAfterMs = await until('fail-closed refusing on the cut node', STALE_AFTER_MS + 6_000, async () => {
        const r = await routeCall(closedA.port, before.first, before.secondMaskedAs);
        return r.answer?.status === 'ERROR' ? Date.now() - cutAt : undefined;
      });
      expect(refusedAfterMs).toBeGreaterThanOrEqual(STALE_AFTER_MS - 600); // fresh_at stops at the cut; up to a ping earlier
      expect((await routeCall(closedA.port, before.second, before.firstMaskedAs)).answer).toMatchObject({ status: 'ERROR', target: '', cli: '' });
      expect(closedA.lines().some((l) => l.includes('replica stale: refusing every call (fail-closed)'))).toBe(true);
      expect((await routeCall(keepA.port, before.first, before.secondMaskedAs)).answer).toMatchObject({ status: 'BRIDGE', session: before.id });
      expect(keepA.lines().some((l) => l.includes('replica stale: routing the sessions it has (keep-routing)'))).toBe(true);
      const during = await writer.createOne();
      await barrier(client, [dbB]);
      expect((await routeCall(closedB.port, during.first, during.secondMaskedAs)).answer).toMatchObject({ status: 'BRIDGE', session: during.id });
      expect((await routeCall(keepA.port, during.first, during.secondMaskedAs)).answer?.status).toBe('NO_SESSION');

      const cut = await until('A no longer ok in cluster status', 15_000, () => {
        const { nodes } = clusterStatusJson(url(target));
        const a = nodes.find((n) => n.node === 'cli_a')!;
        return a.state !== 'ok' && a.lastContactAgoMs! > 3_000 ? nodes : undefined;
      });
      const [a, b] = cut as [NodeView, NodeView];
      expect(['stale', 'unreported', 'inactive']).toContain(a.state);
      expect(b.state).toBe('ok');
      const text = vnum(['cluster', 'status', '--stale-after', '3s'], { ...quietEnv, VNUM_AUTHORITY: url(target) });
      expect(text.stdout.split('\n')[0]).toMatch(/^NODE\s+STATE\s+LAG\s+BEHIND\s+SLOT SIZE\s+WAL\s+LAST CONTACT\s+PHASE\s+ADDRESS\s+CALLS UNSHIPPED\s+LAST ERROR$/);
      expect(text.stdout).toMatch(/^cli_a\s+(stale|unreported|inactive)\s/m);

      // Healed.
      const healedAt = Date.now();
      hostA.heal();
      const routedAfterMs = await until('fail-closed routing again after healing', 30_000, async () => {
        const r = await routeCall(closedA.port, during.first, during.secondMaskedAs);
        return r.answer?.status === 'BRIDGE' ? Date.now() - healedAt : undefined;
      });
      expect((await routeCall(closedA.port, before.first, before.secondMaskedAs)).answer).toMatchObject({ status: 'BRIDGE', session: before.id });
      expect(closedA.lines().some((l) => l.includes('replica fresh again'))).toBe(true);
      await until('both nodes ok again', 20_000, () => {
        const { nodes } = clusterStatusJson(url(target));
        return nodes.every((n) => n.state === 'ok') ? true : undefined;
      });
      await barrier(client, [dbA, dbB]);
      for (const db of [dbA, dbB]) expect((await audit(target, db)).equal).toBe(true);

      // A replica process killed outright: its file stops being fresh; fail-closed notices like a cut.
      replicas[1]!.child.kill('SIGKILL');
      await replicas[1]!.exited;
      const killedAt = Date.now();
      await until('fail-closed refusing after its replica died', STALE_AFTER_MS + 6_000, async () =>
        (await routeCall(closedB.port, during.first, during.secondMaskedAs)).answer?.status === 'ERROR' ? true : undefined,
      );
      const deadAfterMs = Date.now() - killedAt;

      // A clean stop: exit 0, phase stopped in the file and on the authority.
      expect(await replicas[0]!.stop(), replicas[0]!.stderr()).toBe(0);
      expect(health(dbA)?.phase).toBe('stopped');
      const { rows } = await client.query<{ phase: string }>("SELECT phase FROM node_report WHERE node = 'cli_a'");
      expect(rows[0]?.phase).toBe('stopped');
      console.log(
        `freshness: fail-closed refused ${refusedAfterMs} ms after the cut (bound ${STALE_AFTER_MS} ms), routed again ${routedAfterMs} ms after healing; ` +
          `refused ${deadAfterMs} ms after its replica process was killed (its file last fresh up to a ping before)`,
      );
    } finally {
      for (const s of serves) await s.stop();
      for (const r of replicas) await r.stop();
      await client.end();
    }
  }, 150_000);

  it("vnum replica --metrics-port: a living node shows a dead node's slot losing its consumer, growing, then lost; the node comes back rebuilt; serve's freshness metrics turn to failing closed", async () => {
    const { target, client } = await env.authority();
    const writer = new Writer(client, 'met', 0);
    const [hostA, hostB] = env.hosts!.hosts as [Host, Host];
    const dbA = join(env.dir, 'met-a.db');
    const dbB = join(env.dir, 'met-b.db');
    const [portA, portB, servePort] = [await freePort(), await freePort(), await freePort()];
    const metricsEnv = (host: Host, port: number) => ({ VNUM_REPLICA_METRICS_PORT: String(port), VNUM_REPLICA_METRICS_HOST: host.address });
    const replicaA = startReplicaCli(hostA, dbA, 'met_a', url(target, hostA.gateway), metricsEnv(hostA, portA));
    const replicaB = startReplicaCli(hostB, dbB, 'met_b', url(target, hostB.gateway), metricsEnv(hostB, portB));
    const fromB = `http://${hostB.address}:${portB}/metrics`;
    let serve: Serve | undefined;
    try {
      for (const db of [dbA, dbB]) await until(`${db} streaming`, 30_000, () => (health(db)?.phase === 'streaming' ? true : undefined));
      serve = await startServe({
        db: dbB,
        args: ['--metrics-port', String(servePort)],
        env: { VNUM_WHEN_STALE: 'fail-closed', VNUM_STALE_AFTER: `${STALE_AFTER_MS}ms` },
      });
      const served = `http://127.0.0.1:${servePort}/metrics`;
      const slot = (node: string, name: string, extra = '') => `vnum_cluster_${name}{node="${node}",slot="vnum_${node}"${extra}}`;

      // Both streaming: B sees both slots consumed, reserved, both nodes ok (each has reported while streaming), and itself fresh.
      const healthy = await until("both slots active and both nodes ok in B's metrics", 20_000, async () => {
        const m = await scrape(fromB);
        const ok = (node: string) => m.get(slot(node, 'slot_active')) === 1 && m.get(`vnum_cluster_node_state{node="${node}",state="ok"}`) === 1;
        return ok('met_a') && ok('met_b') ? m : undefined;
      });
      expect(healthy.get('vnum_replica_phase{phase="streaming"}')).toBe(1);
      expect(healthy.get('vnum_replica_lag_seconds')).toBeLessThan(STALE_AFTER_MS / 1000);
      expect(healthy.get('vnum_replica_last_contact_age_seconds')).toBeLessThan(STALE_AFTER_MS / 1000);
      expect(healthy.get('vnum_replica_connects_total')).toBeGreaterThanOrEqual(1);
      expect(healthy.get('vnum_replica_rebuilds_total')).toBe(1);
      expect(healthy.get(slot('met_a', 'slot_wal_status', ',wal_status="reserved"'))).toBe(1);
      expect(healthy.get('vnum_cluster_view_age_seconds')).toBeLessThan(5);
      // The test cluster's max_slot_wal_keep_size is 8MB; PostgreSQL counts it to the end of the current 16 MB segment.
      expect(healthy.get(slot('met_a', 'slot_safe_wal_bytes'))).toBeGreaterThan(0);
      expect(healthy.get(slot('met_a', 'slot_safe_wal_bytes'))).toBeLessThanOrEqual(24 * 1024 * 1024);
      let m = await scrape(served);
      expect([m.get('vnum_freshness_stale'), m.get('vnum_freshness_failing_closed')]).toEqual([0, 0]);
      expect(m.get('vnum_freshness_age_seconds')).toBeLessThan(STALE_AFTER_MS / 1000);

      const applied = healthy.get('vnum_replica_transactions_applied_total')!;
      await writer.createOne();
      await barrier(client, [dbA, dbB]);
      await until('B counts the transaction', 10_000, async () =>
        (await scrape(fromB)).get('vnum_replica_transactions_applied_total')! > applied ? true : undefined,
      );

      // A's replica process dies: from B, A's slot has no consumer, and keeps the WAL written since.
      await replicaA.child.kill('SIGKILL');
      await replicaA.exited;
      const dead = await until("A's slot inactive in B's metrics", 20_000, async () => {
        const s = await scrape(fromB);
        return s.get(slot('met_a', 'slot_active')) === 0 ? s : undefined;
      });
      const keptAtDeath = dead.get(slot('met_a', 'slot_retained_wal_bytes'))!;
      for (let i = 0; i < 20; i++) await writer.createOne();
      await barrier(client, [dbB]);
      const grown = await until("A's slot growing in B's metrics", 20_000, async () => {
        const s = await scrape(fromB);
        return s.get(slot('met_a', 'slot_retained_wal_bytes'))! > keptAtDeath ? s : undefined;
      });
      expect(grown.get(slot('met_a', 'slot_behind_bytes'))).toBeGreaterThan(0);
      expect(grown.get(slot('met_b', 'slot_active'))).toBe(1);
      expect(grown.get('vnum_cluster_node_state{node="met_a",state="inactive"}')).toBe(1);
      expect(grown.get('vnum_cluster_node_last_contact_age_seconds{node="met_a"}')).toBeGreaterThan(0);

      // Past max_slot_wal_keep_size: WAL written (1 MB messages no slot decodes into a change), a new segment, a checkpoint,
      // until the authority invalidates A's slot; B, streaming, keeps its own.
      const lost = await until("A's slot lost in B's metrics", 60_000, async () => {
        for (let i = 0; i < 4; i++) await client.query("SELECT pg_logical_emit_message(false, 'vnum-test', repeat('x', 1048576))");
        await client.query('SELECT pg_switch_wal()');
        await client.query('CHECKPOINT');
        await sleep(1_200);
        const s = await scrape(fromB);
        return s.get(slot('met_a', 'slot_wal_status', ',wal_status="lost"')) === 1 ? s : undefined;
      });
      expect(lost.get('vnum_cluster_node_state{node="met_a",state="lost"}')).toBe(1);
      expect(lost.get(slot('met_b', 'slot_wal_status', ',wal_status="lost"'))).toBe(0);
      expect(lost.get(slot('met_b', 'slot_active'))).toBe(1);

      // A comes back: its replica drops the lost slot and rebuilds from a snapshot; B sees a consumed, reserved slot again.
      const portA2 = await freePort();
      const replicaA2 = startReplicaCli(hostA, dbA, 'met_a', url(target, hostA.gateway), metricsEnv(hostA, portA2));
      try {
        const back = await until("A rebuilt and streaming in its own metrics", 30_000, async () => {
          const a = await scrape(`http://${hostA.address}:${portA2}/metrics`).catch(() => undefined);
          return a?.get('vnum_replica_rebuilds_total') === 1 && a.get('vnum_replica_phase{phase="streaming"}') === 1 ? a : undefined;
        });
        expect(back.get('vnum_replica_lag_seconds')).toBeLessThan(STALE_AFTER_MS / 1000);
        await until("A's new slot consumed and reserved in B's metrics", 20_000, async () => {
          const s = await scrape(fromB);
          return s.get(slot('met_a', 'slot_active')) === 1 && s.get(slot('met_a', 'slot_wal_status', ',wal_status="reserved"')) === 1 ? true : undefined;
        });
        await barrier(client, [dbA, dbB]);
        expect((await audit(target, dbA)).equal).toBe(true);
      } finally {
        await replicaA2.stop();
      }

      // B's own replica process dies: its router, fail-closed, says it refuses every call.
      await replicaB.child.kill('SIGKILL');
      await replicaB.exited;
      m = await until('serve failing closed in its metrics', STALE_AFTER_MS + 8_000, async () => {
        const s = await scrape(served);
        return s.get('vnum_freshness_failing_closed') === 1 ? s : undefined;
      });
      expect(m.get('vnum_freshness_stale')).toBe(1);
      expect(m.get('vnum_freshness_age_seconds')).toBeGreaterThan(STALE_AFTER_MS / 1000);
      console.log(`metrics: A's slot kept ${keptAtDeath} B when its consumer died, ${grown.get(slot('met_a', 'slot_retained_wal_bytes'))} B after 20 creates`);
    } finally {
      await serve?.stop();
      for (const r of [replicaA, replicaB]) await r.stop();
      await client.end();
    }
  }, 120_000);
}, { hosts: 2 });
