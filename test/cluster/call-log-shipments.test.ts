/**
 * Shipments of a node's call log as the authority takes them
 * (src/authority/pg-calls.ts, writeShipment).
 *
 * A node's file restored from an older copy of itself keeps its log id and
 * numbers new calls with ids the authority already holds for other calls.
 * The shipment upsert keeps the row with the later change, so without a
 * check those calls would never reach the authority and nobody would know:
 * the authority refuses such a shipment whole, naming the cause and the
 * fix (src/authority/pg-calls.ts, refuseReusedIds), while a shipment sent
 * again after a kill (the same calls) is taken as before.
 *
 * Two shipments of one node at once (two `vnum serve` on one file) take
 * turns on the node's position row, the very first ones too, so a call's
 * webhook events are judged against what the other committed: each once.
 */
import { expect, it } from 'vitest';
import { pgCallShipper, writeShipment } from '../../src/authority/pg-calls.js';
import { setPgRecording } from '../../src/webhooks/pg-outbox.js';
import type { Shipment, ShippedCall } from '../../src/calls/shipping.js';
import { ErrorCode, VnumError } from '../../src/errors.js';
import { clusterSuite } from '../support/cluster/suite.js';

const T0 = Date.UTC(2026, 11, 1, 12);

function call(id: number, changeSeq: number, uniqueid: string, ended: boolean): ShippedCall {
  return {
    id, change_seq: changeSeq, uniqueid, channel: `PJSIP/carrier-${uniqueid}`, session_id: 'order-1', caller: 'first',
    started_at: T0 + id, ringing_at: null, answered_at: null, ended_at: ended ? T0 + id + 1_000 : null, lost_at: null,
    dial_status: ended ? 'NOANSWER' : null, hangup_cause: null, hangup_cause_text: null, callee_uniqueid: null,
    hangup_requested_at: null, hangup_reason: null, via: null, recording_path: null, recording_bytes: null, recording_deleted_at: null,
  };
}

function shipment(calls: ShippedCall[]): Shipment {
  return { node: 'a', logId: 'log-a', calls, toSeq: calls.at(-1)!.change_seq, backlogAfter: 0, routers: [], events: [] };
}

clusterSuite('shipments of a node\'s call log on the authority', (env) => {
  it('its shipment reusing a call id for another channel is refused whole, naming the cause and the fix; the same calls shipped again are taken', async () => {
    const { target, client } = await env.authority();
    const shipper = pgCallShipper(target);
    try {
      // Call 1 began (change 1), call 2 began (change 2), call 1 ended (change 3): what the node ships, oldest change first.
      await shipper.send(shipment([call(2, 2, '1700000000.2', false), call(1, 3, '1700000000.1', true)]), T0);
      // Sent again after a kill before the node's cursor moved: nothing changes, nothing is refused.
      await shipper.send(shipment([call(2, 2, '1700000000.2', false), call(1, 3, '1700000000.1', true)]), T0 + 1);
      const rows = async () =>
        (await client.query<{ node_call_id: string; uniqueid: string; change_seq: string }>('SELECT node_call_id, uniqueid, change_seq FROM call_log ORDER BY node_call_id')).rows.map(
          (r) => [Number(r.node_call_id), r.uniqueid, Number(r.change_seq)],
        );
      expect(await rows()).toEqual([
        [1, '1700000000.1', 3],
        [2, '1700000000.2', 2],
      ]);

      // The file restored from a copy taken after call 1 began: its next call is numbered 2 again, on another channel, and a new call 3.
      let refused: unknown;
      try {
        await shipper.send(shipment([call(2, 2, '1700000099.7', true), call(3, 3, '1700000099.8', false)]), T0 + 2);
      } catch (error) {
        refused = error;
      }
      expect(refused).toBeInstanceOf(VnumError);
      expect((refused as VnumError).code).toBe(ErrorCode.Database);
      expect((refused as VnumError).message).toMatch(/node a's call log reuses call id 2 .*restored from an older copy.*new log id/);
      // Nothing of it was written: not call 3 either.
      expect(await rows()).toEqual([
        [1, '1700000000.1', 3],
        [2, '1700000000.2', 2],
      ]);
    } finally {
      await shipper.close();
      await client.end();
    }
  });

  it('two first shipments of one node at once (two serves on one file, the later with the call\'s end): call.bridged once, call.ended once', async () => {
    const { target, client } = await env.authority();
    const [a, b] = [env.cluster.client(target), env.cluster.client(target)];
    await a.connect();
    await b.connect();
    try {
      await setPgRecording(client, true, T0);
      // The first serve's shipment (the call began) is written and not yet committed when the second's (it ended) starts.
      await a.query('BEGIN');
      await writeShipment(a, shipment([call(1, 1, '1700000001.1', false)]), T0);
      await b.query('BEGIN');
      const second = writeShipment(b, shipment([call(1, 2, '1700000001.1', true)]), T0).then(async () => b.query('COMMIT'));
      const waiting = async () => Number((await client.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).rows[0]!.n);
      for (let i = 0; i < 200 && (await waiting()) < 1; i++) await new Promise((r) => setTimeout(r, 10));
      expect(await waiting()).toBe(1);
      await a.query('COMMIT');
      await second;
      const { rows } = await client.query<{ type: string; n: number }>('SELECT type, count(*)::int AS n FROM webhook_event GROUP BY type ORDER BY type');
      expect(rows).toEqual([
        { type: 'call.bridged', n: 1 },
        { type: 'call.ended', n: 1 },
      ]);
    } finally {
      await a.end();
      await b.end();
      await client.end();
    }
  });
});
