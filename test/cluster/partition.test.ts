/**
 * Issue 15: a PBX node cut off from the network. Two nodes run in network
 * namespaces (hosts of their own, harness/netns.ts), PostgreSQL on this
 * machine listens on each host's link; a writer commits throughout. Node A's
 * link goes down for longer than wal_sender_timeout: A notices within
 * seconds by its own clock (TCP would take ~15 minutes), its replica stays
 * readable and `vnum serve` routes existing sessions from it, a session
 * created meanwhile routes from B but not yet from A; after healing, A
 * reconnects, catches up, and both replicas equal PostgreSQL row by row.
 */
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { routeCall } from '../reliability/lib.js';
import { startServe } from '../support/serve.js';
import { audit, barrier, counterHistoryProblems, routeFrom, sleep } from '../support/cluster/checks.js';
import type { Host } from '../support/cluster/netns.js';
import { startNode, type NodeConfig, type NodeProcess } from '../support/cluster/node.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { Writer } from '../support/cluster/writer.js';

const CUT_MS = 8_000;
const STALE_AFTER_MS = 2_000;

clusterSuite('a node cut off from the network', (env) => {
  it('keeps routing from its replica, notices the cut within seconds, and catches up after healing with nothing lost or doubled', async () => {
    const { target, client } = await env.authority();
    const writer = new Writer(client, 'part', 0);
    for (let i = 0; i < 100; i++) await writer.next();

    const [hostA, hostB] = env.hosts!.hosts as [Host, Host];
    const config = (name: string, gateway: string): NodeConfig => ({
      db: join(env.dir, `${name}.db`),
      target: { ...target, host: gateway },
      node: name,
      statusEveryMs: 100,
      pingIntervalMs: 500,
      staleAfterMs: STALE_AFTER_MS,
      retryMaxMs: 1_000,
    });
    const a = config('a', hostA.gateway);
    const b = config('b', hostB.gateway);
    const nodes: NodeProcess[] = [startNode(a, hostA), startNode(b, hostB)];
    let writing = true;
    let written: Promise<number> | undefined;
    const serve = await startServe({ db: a.db });
    try {
      for (const n of nodes) await n.waitForStatus((s) => s.phase === 'streaming', 20_000, 'streaming');
      const before = await writer.createOne();
      await barrier(client, [a.db, b.db]);
      written = writer.run(30, () => !writing);
      written.catch(() => {});
      const routed = await routeCall(serve.port, before.first, before.secondMaskedAs);
      expect(routed.answer).toMatchObject({ status: 'BRIDGE', target: before.second, session: before.id });

      // The cut.
      const [nodeA, nodeB] = nodes as [NodeProcess, NodeProcess];
      await sleep(300);
      const cutAt = Date.now();
      hostA.cut();
      const stale = await nodeA.waitForStatus((s) => s.stale, STALE_AFTER_MS + 4_000, 'noticing the cut');
      const noticedAfterMs = Date.now() - cutAt;
      expect(stale.lastContactAt!).toBeLessThanOrEqual(cutAt + 100);
      const during = await writer.createOne();
      await barrier(client, [b.db]);

      // Cut off: A routes what it had, through the router, from its own file; the new session routes on B, not yet on A.
      const still = await routeCall(serve.port, before.second, before.firstMaskedAs);
      expect(still.answer).toMatchObject({ status: 'BRIDGE', target: before.first, session: before.id });
      expect(routeFrom(b.db, during.first, during.secondMaskedAs)).toMatchObject({ status: 'BRIDGE', session: during.id });
      expect(routeFrom(a.db, during.first, during.secondMaskedAs).status).not.toBe('BRIDGE');
      await sleep(Math.max(0, CUT_MS - (Date.now() - cutAt)));
      const lagging = nodeA.status()!;
      expect(lagging.stale).toBe(true);
      expect(lagging.lagMs!).toBeGreaterThan(CUT_MS - 1_000);
      expect(nodeB.status()!).toMatchObject({ stale: false, phase: 'streaming' });

      // Healed.
      const healedAt = Date.now();
      hostA.heal();
      await nodeA.waitForStatus((s) => !s.stale && s.phase === 'streaming' && s.lagMs !== null && s.lagMs < 1_500, 30_000, 'caught up after healing');
      const caughtUpAfterMs = Date.now() - healedAt;
      expect(routeFrom(a.db, during.first, during.secondMaskedAs)).toMatchObject({ status: 'BRIDGE', session: during.id });
      writing = false;
      await written;
      await barrier(client, [a.db, b.db]);
      for (const n of [a, b]) {
        const report = await audit(target, n.db);
        expect(report.equal, `${n.node}: ${report.text}`).toBe(true);
        expect(counterHistoryProblems(n.db).problems).toEqual([]);
      }
      const statusA = nodeA.status()!;
      expect(statusA.connects).toBeGreaterThanOrEqual(2);
      // Its own clock dropped the dead connection; reconnects failed while cut; one succeeded after healing.
      const afterCut = nodeA.events.slice(nodeA.events.findIndex((e) => e.type === 'stale'));
      expect(afterCut[0]?.type).toBe('stale');
      expect(afterCut.filter((e) => e.type === 'disconnected').length).toBeGreaterThanOrEqual(2);
      expect(afterCut.at(-1)?.type).toBe('connected');
      expect(statusA.rebuilds).toBe(1);
      console.log(
        `partition: cut noticed after ${noticedAfterMs} ms (stale bound ${STALE_AFTER_MS} ms); caught up ${caughtUpAfterMs} ms after healing; ` +
          `A reconnected ${statusA.connects - 1} time(s); ${writer.committed} transactions in all; A: ${afterCut.map((e) => (e.type === 'disconnected' ? e.error : e.type)).join(' / ')}`,
      );
    } finally {
      writing = false;
      await written?.catch(() => {});
      await serve.stop();
      for (const n of nodes) await n.stop();
      await client.end();
    }
  }, 120_000);
}, { hosts: 2 });
