/**
 * A node's file restored from an older copy of itself keeps its log id and
 * numbers new calls with ids the authority already holds for other calls.
 * The shipment upsert keeps the row with the later change, so without a
 * check those calls would never reach the authority and nobody would know:
 * the authority refuses such a shipment whole, naming the cause and the
 * fix (src/authority/pg-calls.ts, refuseReusedIds), while a shipment sent
 * again after a kill (the same calls) is taken as before.
 */
import { expect, it } from 'vitest';
import { pgCallShipper } from '../../src/authority/pg-calls.js';
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

clusterSuite('a node file restored from an older copy of itself', (env) => {
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
});
