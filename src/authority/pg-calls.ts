import type pg from 'pg';
import { ErrorCode, VnumError } from '../errors.js';
import type { Call, CallFilter, CallRow, RouterStatus } from '../calls/store.js';
import { callFromRow, STATUS_FRESH_MS } from '../calls/store.js';
import type { QueuedEvent, Shipment, ShipmentSender, ShippedCall } from '../calls/shipping.js';
import type { EventRecord } from '../webhooks/events.js';
import type { CounterName } from '../webhooks/outbox.js';
import { callJson } from '../calls/json.js';
import { maskedNumbers } from '../webhooks/events.js';
import { addToPgCounter, insertPgEvent, lockPgLanes, pgRecordingSince } from '../webhooks/pg-outbox.js';
import type { PgTarget } from '../replica/stream.js';
import { PgStore, positional } from './pg-store.js';

/**
 * The nodes' call logs and routers' reports on the authority (PostgreSQL
 * migration 8): what a node's shipper writes (src/calls/shipping.ts, from
 * `vnum serve --authority`) and what GET /v1/calls, GET /v1/health and
 * `vnum calls --authority` read.
 *
 * A shipment is one transaction: the calls upserted by (node, log, the
 * node's call id), a row replaced only by a later change of it (change_seq),
 * the routers' reports (never moved back either), and the node's position.
 * The node moves its own cursor only after this COMMIT, so a shipment sent
 * twice (the node killed or cut off before it heard the COMMIT) changes
 * nothing the second time.
 *
 * A call's id on the authority is call_log.id (PostgreSQL's own identity):
 * unique across nodes, and increasing in the order calls first reached the
 * authority, which is what the newest-first pages of GET /v1/calls follow.
 * The node's own id stays in node_call_id.
 */

const COLUMNS = [
  'uniqueid', 'channel', 'session_id', 'caller', 'started_at', 'ringing_at', 'answered_at', 'ended_at', 'lost_at', 'dial_status',
  'hangup_cause', 'hangup_cause_text', 'callee_uniqueid', 'hangup_requested_at', 'hangup_reason', 'via', 'recording_path',
  'recording_bytes', 'recording_deleted_at',
] as const;

const RECORD_TYPES =
  'id bigint, change_seq bigint, uniqueid text, channel text, session_id text, caller text, started_at bigint, ringing_at bigint, ' +
  'answered_at bigint, ended_at bigint, lost_at bigint, dial_status text, hangup_cause integer, hangup_cause_text text, callee_uniqueid text, ' +
  'hangup_requested_at bigint, hangup_reason text, via text, recording_path text, recording_bytes bigint, recording_deleted_at bigint';

/** The authority's clock in ms: when a shipment arrived, by one clock for every node (`vnum cluster status` shows how long ago). */
const PG_NOW_MS = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint';

/** The calls of a shipment, each row moved forward only. Returns the authority's rows it wrote (id, node_call_id). */
const UPSERT_CALLS_SQL = `INSERT INTO call_log (node, log_id, node_call_id, change_seq, ${COLUMNS.join(', ')}, shipped_at)
  SELECT $1, $2, r.id, r.change_seq, ${COLUMNS.map((c) => `r.${c}`).join(', ')}, ${PG_NOW_MS}
    FROM jsonb_to_recordset($3::jsonb) AS r(${RECORD_TYPES})
  ON CONFLICT (node, log_id, node_call_id) DO UPDATE SET change_seq = excluded.change_seq, ${COLUMNS.map((c) => `${c} = excluded.${c}`).join(', ')},
     shipped_at = excluded.shipped_at
   WHERE call_log.change_seq < excluded.change_seq
  RETURNING id, node_call_id`;

const UPSERT_ROUTERS_SQL = `INSERT INTO router_report (node, router, pid, started_at, updated_at, ami_state, ami_since, ami_error, asterisk_version)
  SELECT $1, r.router, r.pid, r.started_at, r.updated_at, r.ami_state, r.ami_since, r.ami_error, r.asterisk_version
    FROM jsonb_to_recordset($2::jsonb) AS r(router text, pid integer, started_at bigint, updated_at bigint, ami_state text, ami_since bigint, ami_error text, asterisk_version text)
  ON CONFLICT (node, router) DO UPDATE SET pid = excluded.pid, started_at = excluded.started_at, updated_at = excluded.updated_at,
     ami_state = excluded.ami_state, ami_since = excluded.ami_since, ami_error = excluded.ami_error, asterisk_version = excluded.asterisk_version
   WHERE router_report.updated_at < excluded.updated_at`;

const NODE_SHIPPING_ROW_SQL = `INSERT INTO node_shipping (node, log_id, shipped_seq, shipped_at, backlog, event_seq) VALUES ($1, $2, 0, ${PG_NOW_MS}, 0, 0)
  ON CONFLICT (node) DO NOTHING`;

const NODE_SHIPPING_SQL = `INSERT INTO node_shipping (node, log_id, shipped_seq, shipped_at, backlog, event_seq) VALUES ($1, $2, $3, ${PG_NOW_MS}, $4, $5)
  ON CONFLICT (node) DO UPDATE SET
    shipped_seq = CASE WHEN node_shipping.log_id = excluded.log_id THEN GREATEST(node_shipping.shipped_seq, excluded.shipped_seq) ELSE excluded.shipped_seq END,
    event_seq = CASE WHEN node_shipping.log_id = excluded.log_id THEN GREATEST(node_shipping.event_seq, excluded.event_seq) ELSE excluded.event_seq END,
    log_id = excluded.log_id, shipped_at = excluded.shipped_at, backlog = excluded.backlog`;

/** What a shipment changed on the authority: the previous state of each call it touched, for the call events (webhooks). */
export interface ShippedChange {
  /** The authority's id. */
  id: number;
  nodeCallId: number;
  before: { answered_at: number | null; ended_at: number | null; lost_at: number | null } | null;
}

/**
 * One shipment on an open transaction's client (the caller commits). Returns
 * the calls it moved, with their state before, so the caller can tell which
 * changes are new (a re-shipped change moves nothing and is not returned).
 */
export async function writeShipment(client: pg.ClientBase, shipment: Shipment, now: number): Promise<ShippedChange[]> {
  // The node's position, locked: two shipments of one node (two serves on one file) take turns, the very first
  // too (the row is made first, if missing: a second INSERT waits for the first's COMMIT, then finds it).
  await client.query({ name: 'vnum_node_shipping_row', text: NODE_SHIPPING_ROW_SQL, values: [shipment.node, shipment.logId] });
  const { rows: position } = await client.query<{ log_id: string; event_seq: number | string }>('SELECT log_id, event_seq FROM node_shipping WHERE node = $1 FOR UPDATE', [
    shipment.node,
  ]);
  const tookEvents = position[0]?.log_id === shipment.logId ? Number(position[0].event_seq) : 0;
  let changes: ShippedChange[] = [];
  if (shipment.calls.length > 0) {
    const ids = shipment.calls.map((c) => c.id);
    // The rows as they were, locked: what each change moves from (a call's answer or end is new only once).
    const { rows: before } = await client.query<{ node_call_id: number; uniqueid: string; answered_at: number | null; ended_at: number | null; lost_at: number | null }>(
      'SELECT node_call_id, uniqueid, answered_at, ended_at, lost_at FROM call_log WHERE node = $1 AND log_id = $2 AND node_call_id = ANY($3::bigint[]) FOR UPDATE',
      [shipment.node, shipment.logId, ids],
    );
    const was = new Map(before.map((r) => [Number(r.node_call_id), r]));
    refuseReusedIds(shipment, was);
    const { rows } = await client.query<{ id: number; node_call_id: number }>(UPSERT_CALLS_SQL, [shipment.node, shipment.logId, JSON.stringify(shipment.calls)]);
    changes = rows.map((r) => {
      const prior = was.get(Number(r.node_call_id));
      return {
        id: Number(r.id),
        nodeCallId: Number(r.node_call_id),
        before: prior ? { answered_at: num(prior.answered_at), ended_at: num(prior.ended_at), lost_at: num(prior.lost_at) } : null,
      };
    });
  }
  if (shipment.routers.length > 0) {
    const routers = shipment.routers.map((r) => ({
      router: r.router, pid: r.pid, started_at: r.startedAt, updated_at: r.updatedAt, ami_state: r.amiState,
      ami_since: r.amiSince, ami_error: r.amiError, asterisk_version: r.asteriskVersion,
    }));
    await client.query(UPSERT_ROUTERS_SQL, [shipment.node, JSON.stringify(routers)]);
  }
  const events = shipment.events.filter((e) => e.seq > tookEvents);
  const eventSeq = Math.max(tookEvents, shipment.events.at(-1)?.seq ?? 0);
  await client.query(NODE_SHIPPING_SQL, [shipment.node, shipment.logId, shipment.toSeq, shipment.backlogAfter, eventSeq]);
  const queued = queuedOf(events);
  const planned = plannedCallEvents(shipment, changes);
  if ((planned.length > 0 || queued.events.length > 0) && (await pgRecordingSince(client)) !== null) {
    await appendShipmentEvents(client, [...(await callEventRecords(client, planned)), ...queued.events], now);
  }
  // Counters in one order in every transaction that moves them (their rows are locked to COMMIT).
  for (const [name, by] of [...queued.counters].sort(([x], [y]) => (x < y ? -1 : 1))) await addToPgCounter(client, name, by);
  return changes;
}

/**
 * A shipment's webhook events (while recording is on), last in its
 * transaction and held briefly: every lane they go to is locked
 * in one statement, in the order every other writer takes lanes in (by
 * hash: ../webhooks/pg-outbox.ts, lockPgLanes), then each is inserted (one
 * round trip each), so a lane is held from here to COMMIT only and two
 * writers never wait on each other's lanes in a circle.
 */
async function appendShipmentEvents(client: pg.ClientBase, events: EventRecord[], now: number): Promise<void> {
  await lockPgLanes(client, [...new Set(events.map((e) => e.session))]);
  for (const event of events) await insertPgEvent(client, event, now);
}

/**
 * A call's row never changes its channel (uniqueid), so a shipped id the
 * authority holds for another channel means the node's file reuses ids of
 * its own log: it was restored from an older copy of itself. Its new calls
 * would otherwise be dropped without a word (the upsert keeps the row with
 * the later change): the shipment is refused instead, which the node
 * counts, logs and alerts on (VnumCallLogShippingFailing), naming the fix.
 */
function refuseReusedIds(shipment: Shipment, was: ReadonlyMap<number, { uniqueid: string }>): void {
  const reused = shipment.calls.find((c) => {
    const prior = was.get(c.id);
    return prior !== undefined && prior.uniqueid !== c.uniqueid;
  });
  if (!reused) return;
  throw new VnumError(
    ErrorCode.Database,
    `node ${shipment.node}'s call log reuses call id ${reused.id} (log ${shipment.logId}), which the authority holds for another call: ` +
      'its file was restored from an older copy of itself. Give the file a new log id (docs/cluster.md, "The call log on the authority", Ids); nothing of this shipment was written',
  );
}

/**
 * What a node queued for the outbox (src/calls/shipping.ts, event_to_ship):
 * call.refused events and the refusal counters' deltas, summed by name.
 * Each queued entry is taken once: the node's position (event_seq) says
 * which it already took, so one shipped again after a kill is skipped.
 */
function queuedOf(queued: QueuedEvent[]): { events: EventRecord[]; counters: Map<CounterName, number> } {
  const events: EventRecord[] = [];
  const counters = new Map<CounterName, number>();
  for (const e of queued) {
    const data = JSON.parse(e.data) as Record<string, unknown>;
    if (e.type === 'counter') {
      const name = data.name as CounterName;
      counters.set(name, (counters.get(name) ?? 0) + Number(data.by));
    } else if (e.session_id !== null) {
      events.push({ type: e.type as EventRecord['type'], session: e.session_id, occurredAt: e.occurred_at, data: data as unknown as EventRecord['data'] });
    }
  }
  return { events, counters };
}

/**
 * The webhook events of what a shipment changed, in its transaction (the
 * outbox on the authority, src/webhooks/pg-outbox.ts: nothing while
 * recording is off), as the single box writes them in the call's own
 * transaction (src/calls/store.ts): call.bridged for a call new to the
 * authority, call.answered when its answer is new, call.ended when its end
 * (or its loss) is new and it had neither. Judged against the authority's
 * row as it was before this shipment, so a change shipped again (the node
 * killed before it heard the COMMIT) moves no row and emits nothing, and a
 * call first shipped already over emits all three, once. `data.call` is the
 * call as GET /v1/calls shows it (the authority's id) with its masked numbers.
 */
export function callEventsOf(call: ShippedCall, before: ShippedChange['before']): Array<{ type: CallEventType; occurredAt: number }> {
  const events: Array<{ type: CallEventType; occurredAt: number }> = [];
  if (before === null) events.push({ type: 'call.bridged', occurredAt: call.started_at });
  if ((before === null || before.answered_at === null) && call.answered_at !== null) events.push({ type: 'call.answered', occurredAt: call.answered_at });
  const wasOver = before !== null && (before.ended_at !== null || before.lost_at !== null);
  const over = call.ended_at ?? call.lost_at;
  if (!wasOver && over !== null) events.push({ type: 'call.ended', occurredAt: over });
  return events;
}

type CallEventType = 'call.bridged' | 'call.answered' | 'call.ended';

/** The events of what a shipment changed, in the order of its changes (so within a session too). */
function plannedCallEvents(shipment: Shipment, changes: ShippedChange[]): Array<{ change: ShippedChange; call: ShippedCall; events: ReturnType<typeof callEventsOf> }> {
  const byNodeId = new Map(shipment.calls.map((c) => [c.id, c]));
  return changes
    .map((change) => ({ change, call: byNodeId.get(change.nodeCallId)! }))
    .map(({ change, call }) => ({ change, call, events: callEventsOf(call, change.before) }))
    .filter((p) => p.events.length > 0)
    .sort((a, b) => a.call.change_seq - b.call.change_seq);
}

/** The planned events as the outbox records them: the call as `vnum calls --json` shows it, with the numbers dialled and presented. */
async function callEventRecords(client: pg.ClientBase, planned: ReturnType<typeof plannedCallEvents>): Promise<EventRecord[]> {
  if (planned.length === 0) return [];
  const sessions = [...new Set(planned.map((p) => p.call.session_id))];
  const { rows } = await client.query<{ id: string; first_masked_as: string; second_masked_as: string }>(
    'SELECT id, first_masked_as, second_masked_as FROM session WHERE id = ANY($1::text[])',
    [sessions],
  );
  const masks = new Map(rows.map((r) => [r.id, { first: r.first_masked_as, second: r.second_masked_as }]));
  return planned.flatMap(({ change, call, events }) => {
    const mask = masks.get(call.session_id);
    const shown = callFromRow({ ...call, id: change.id });
    const data = { call: { ...callJson(shown), ...(mask ? maskedNumbers(shown.caller, mask) : {}) } };
    return events.map((event) => ({ type: event.type, session: call.session_id, occurredAt: event.occurredAt, data }));
  });
}

const num = (v: number | string | null): number | null => (v === null ? null : Number(v));

export interface PgCallShipper {
  send: ShipmentSender;
  close(): Promise<void>;
}

/**
 * The sender `vnum serve --authority` ships with: its own small pool (one
 * connection is enough: one shipment at a time), bounds short enough that a
 * silent link costs seconds, not minutes.
 */
export function pgCallShipper(target: PgTarget, options: { timeoutMs?: number } = {}): PgCallShipper {
  const store = new PgStore(target, { connections: 1, applicationName: 'vnum serve (call log)', timeoutMs: options.timeoutMs ?? 5_000 });
  const send: ShipmentSender = async (shipment, now) => {
    await store.transaction((c) => writeShipment(c, shipment, now));
  };
  return { send, close: () => store.close() };
}

// ---------------------------------------------------------------------------
// Reads (the API and the CLI on the authority)

const OPEN = 'ended_at IS NULL AND lost_at IS NULL';

/** As the single box's listCalls (src/calls/store.ts): newest first, by the authority's id, the same filters and paging. */
export async function listShippedCalls(store: PgStore, filter: CallFilter): Promise<{ calls: Call[]; more: boolean; next: number | undefined }> {
  const where: string[] = ['id < @after'];
  if (filter.session !== undefined) where.push('session_id = @session');
  if (filter.since !== undefined) where.push('started_at >= @since');
  if (filter.live) where.push(OPEN);
  const query = positional(`SELECT * FROM call_log WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT @limit`, {
    session: filter.session ?? null,
    since: filter.since ?? null,
    after: filter.after ?? Number.MAX_SAFE_INTEGER,
    limit: filter.limit + 1,
  });
  const { rows } = await store.query<Record<string, unknown>>(query.text, query.values);
  const more = rows.length > filter.limit;
  const page = rows.slice(0, filter.limit);
  const calls = page.map((r) => callFromRow(r as unknown as CallRow));
  return { calls, more, next: more ? calls.at(-1)!.id : undefined };
}

/** How many of these calls (the authority's ids) are still open, as far as their nodes have shipped. */
export async function openShippedCallCount(store: PgStore, ids: readonly number[]): Promise<number> {
  if (ids.length === 0) return 0;
  const { rows } = await store.query<{ n: number }>(`SELECT count(*)::int AS n FROM call_log WHERE id = ANY($1::bigint[]) AND ${OPEN}`, [ids]);
  return rows[0]?.n ?? 0;
}

/** Whether some node's router reports a live AMI login (the single box's amiWatching). */
export async function someRouterWatching(store: PgStore, now: number): Promise<boolean> {
  const { rows } = await store.query<{ n: number }>("SELECT count(*)::int AS n FROM router_report WHERE ami_state = 'logged-in' AND updated_at >= $1", [now - STATUS_FRESH_MS]);
  return (rows[0]?.n ?? 0) > 0;
}

/** Every node's routers that reported since `since`, each named `<node>/<host:port>` (every node's router may listen on the same address). */
export async function routerReports(store: PgStore, since: number): Promise<RouterStatus[]> {
  const { rows } = await store.query<Record<string, unknown>>('SELECT * FROM router_report WHERE updated_at >= $1 ORDER BY node, router', [since]);
  return rows.map((row) => ({
    router: `${row.node as string}/${row.router as string}`,
    pid: row.pid as number,
    startedAt: row.started_at as number,
    updatedAt: row.updated_at as number,
    amiState: row.ami_state as RouterStatus['amiState'],
    amiSince: row.ami_since as number | null,
    amiError: row.ami_error as string | null,
    asteriskVersion: row.asterisk_version as string | null,
  }));
}

/** Each node's shipping position, for `vnum cluster status`. */
export interface NodeShipping {
  node: string;
  shippedSeq: number;
  shippedAt: number;
  backlog: number;
}

export async function nodeShipping(client: pg.ClientBase): Promise<NodeShipping[]> {
  const { rows } = await client.query<{ node: string; shipped_seq: string | number; shipped_at: string | number; backlog: string | number }>(
    'SELECT node, shipped_seq, shipped_at, backlog FROM node_shipping ORDER BY node',
  );
  return rows.map((r) => ({ node: r.node, shippedSeq: Number(r.shipped_seq), shippedAt: Number(r.shipped_at), backlog: Number(r.backlog) }));
}
