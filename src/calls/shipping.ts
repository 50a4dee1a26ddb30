import type { Logger } from 'pino';
import { replicaMark } from '../replica/read-only.js';
import type { Db } from '../store/db.js';
import { FollowedDatabase } from '../store/followed-db.js';
import { perConnection } from '../store/statements.js';
import { ROUTER_REPORTS_KEPT_MS } from './health.js';
import { listRouterStatus, type CallRow, type RouterStatus } from './store.js';
import type { EventRecord } from '../webhooks/events.js';
import type { CounterName } from '../webhooks/outbox.js';

/**
 * A cluster node's call log on its way to the authority (issue 15;
 * docs/cluster.md, "The call log on the authority"), off the call path:
 * `vnum serve` keeps writing each call into its own file exactly as a single
 * box does (the router never waits on the network), and this shipper copies
 * what changed to PostgreSQL in the background.
 *
 * - **What changed.** Every insert or update of a call row takes the next
 *   number of the file's sequence into its `change_seq` (SQLite migration
 *   12's triggers); `call_shipping.shipped_seq` is how far the authority has
 *   it. A shipment is the rows past it, oldest change first, at most
 *   `batchSize`, each with its current values (a row changed three times
 *   since ships once).
 * - **Exactly once, by construction.** The authority takes a shipment in one
 *   transaction: an upsert keyed by (node, log, call id) that never replaces
 *   a row by an older change, and the node's position; the file's cursor
 *   moves only after that COMMIT. A shipper killed, cut off, or failing
 *   between the two ships the same rows again, which changes nothing.
 * - **Never in the way.** One shipment at a time, every `intervalMs` (at
 *   once again while a full batch leaves more behind); a failure is counted,
 *   logged at most once per `logEveryMs`, and retried after a pause that
 *   doubles up to `retryMaxMs`. Nothing is dropped: the backlog is the file
 *   itself, bounded only by its disk.
 * - **Only a replica ships.** The node's name is the one `vnum replica`
 *   wrote into the file; a single box's file (no name) ships nothing.
 *
 * The routers' reports (`router_status`: AMI's state every 5 s) ride along,
 * each router's latest row when it changed, so GET /v1/health on the
 * authority sees every node's router.
 */

/** A call row as the file holds it (the call table's columns), as shipped. */
export interface ShippedCall extends CallRow {
  change_seq: number;
  channel: string;
  callee_uniqueid: string | null;
}

/** An event (or a counter's delta) the node queued for the authority's outbox (event_to_ship). */
export interface QueuedEvent {
  seq: number;
  /** A webhook event type (call.refused), or 'counter' (data: {name, by}). */
  type: string;
  session_id: string | null;
  occurred_at: number;
  /** JSON. */
  data: string;
}

/**
 * Rows (events and counter deltas) queued on a node at most. Past it nothing
 * is queued: a refusal is counted as refusals_dropped in the router's memory
 * (./refusals.ts), and counter deltas wait there too, until the shipper has
 * made room; so the queue never grows past it, whether the authority is
 * down for a day or this `vnum serve` has no `--authority` to ship with.
 */
export const MAX_EVENTS_TO_SHIP = 10_000;

/** The shipping tables' statements (SQLite migration 12), made once per connection: the queue's are on the router's thread. */
const statements = perConnection((db: Db) => ({
  span: db.prepare<[], number>('SELECT coalesce(max(seq) - min(seq) + 1, 0) FROM event_to_ship').pluck(),
  queue: db.prepare<[string, string | null, number, string]>('INSERT INTO event_to_ship (type, session_id, occurred_at, data) VALUES (?, ?, ?, ?)'),
  position: db.prepare<[], ShippingPosition>('SELECT log_id AS logId, last_seq AS lastSeq, shipped_seq AS shippedSeq, shipped_at AS shippedAt FROM call_shipping WHERE id = 1'),
  calls: db.prepare<[number, number], ShippedCall>(
    `SELECT id, change_seq, uniqueid, channel, session_id, caller, started_at, ringing_at, answered_at, ended_at, lost_at,
            dial_status, hangup_cause, hangup_cause_text, callee_uniqueid, hangup_requested_at, hangup_reason, via,
            recording_path, recording_bytes, recording_deleted_at
       FROM call WHERE change_seq > ? ORDER BY change_seq LIMIT ?`,
  ),
  events: db.prepare<[number], QueuedEvent>('SELECT seq, type, session_id, occurred_at, data FROM event_to_ship ORDER BY seq LIMIT ?'),
  eventsShipped: db.prepare<[number]>('DELETE FROM event_to_ship WHERE seq <= ?'),
  shipped: db.prepare<[number, number]>('UPDATE call_shipping SET shipped_seq = max(shipped_seq, ?), shipped_at = ? WHERE id = 1'),
}));

/**
 * Whether the queue has room: its rows are at most max(seq) - min(seq) + 1
 * (they leave from the oldest), read from the primary key's two ends, so
 * no count scans the queue on the router's thread.
 */
export function roomToShip(db: Db): boolean {
  return queuedSpan(db) < MAX_EVENTS_TO_SHIP;
}

/** How many rows are queued: they leave only from the oldest (markEventsShipped), so the span of their seqs is their count. */
export function queuedSpan(db: Db): number {
  return statements(db).span.get() ?? 0;
}

/**
 * Queue an event for the authority's outbox (a node's call.refused: on a
 * replica file the outbox is on the authority). Inside the caller's
 * transaction. False when the queue is full: the caller counts it as
 * refusals_dropped, as the single box counts a flood.
 */
export function queueEventToShip(db: Db, event: EventRecord): boolean {
  if (!roomToShip(db)) return false;
  statements(db).queue.run(event.type, event.session, event.occurredAt, JSON.stringify(event.data));
  return true;
}

/** Queue a counter's delta for the authority's outbox counters (webhook_counter). False when the queue is full: the caller keeps it. */
export function queueCounterToShip(db: Db, name: CounterName, by: number, at: number): boolean {
  if (by === 0) return true;
  if (!roomToShip(db)) return false;
  statements(db).queue.run('counter', null, at, JSON.stringify({ name, by }));
  return true;
}

export interface Shipment {
  node: string;
  /** Names this file's log on the authority (call_shipping.log_id). */
  logId: string;
  calls: ShippedCall[];
  /** The change_seq the node's cursor moves to once this is committed (the last call's; the cursor when none). */
  toSeq: number;
  /** Changes left after this shipment. */
  backlogAfter: number;
  routers: RouterStatus[];
  /** Queued events and counter deltas, oldest first (their seq: the authority skips one it already took). */
  events: QueuedEvent[];
}

/** Applies a shipment on the authority in one transaction; throws when it did not commit. */
export type ShipmentSender = (shipment: Shipment, now: number) => Promise<void>;

export interface ShippingPosition {
  logId: string;
  lastSeq: number;
  shippedSeq: number;
  shippedAt: number | null;
}

/** Where the file's log stands; undefined on a file older than SQLite migration 12. */
export function shippingPosition(db: Db): ShippingPosition | undefined {
  return statements(db).position.get();
}

/** Changes not yet shipped. */
export function shippingBacklog(db: Db): number {
  const p = shippingPosition(db);
  return p ? Math.max(0, p.lastSeq - p.shippedSeq) : 0;
}

/** The next shipment's calls: the rows changed since the cursor, oldest change first. */
export function callsToShip(db: Db, limit: number): { position: ShippingPosition; calls: ShippedCall[] } {
  const position = shippingPosition(db);
  if (!position) throw new Error('this file has no call_shipping (SQLite migration 12): open it with this vnum to migrate it');
  const calls = statements(db).calls.all(position.shippedSeq, limit);
  return { position, calls };
}

/**
 * The node this file belongs to: the name its replica process reports under
 * (replica_health), else the one its slot is named for (replica_state,
 * `vnum_<node>`); undefined for a single box's file.
 */
export function nodeOf(db: Db): string | undefined {
  const mark = replicaMark(db);
  if (!mark) return undefined;
  if (mark.node) return mark.node;
  const slot = db.prepare<[], string>('SELECT slot FROM replica_state WHERE id = 1').pluck().get();
  return slot?.startsWith('vnum_') ? slot.slice('vnum_'.length) : undefined;
}

/** The next queued events, oldest first. */
export function eventsToShip(db: Db, limit: number): QueuedEvent[] {
  return statements(db).events.all(limit);
}

/** The authority has these queued events: they leave the node. */
export function markEventsShipped(db: Db, toSeq: number): void {
  statements(db).eventsShipped.run(toSeq);
}

/** The authority has everything up to `toSeq`: the cursor moves there (never back). */
export function markShipped(db: Db, toSeq: number, at: number): void {
  statements(db).shipped.run(toSeq, at);
}

export interface CallShipperOptions {
  dbPath: string;
  send: ShipmentSender;
  logger: Logger;
  /** Between shipments when there is no backlog. */
  intervalMs?: number;
  /** Call changes per shipment (one PostgreSQL transaction). */
  batchSize?: number;
  /** The longest pause after failures (from `intervalMs`, doubling). */
  retryMaxMs?: number;
  logEveryMs?: number;
  busyTimeoutMs?: number;
  now?: () => number;
}

export const SHIPPER_DEFAULTS = Object.freeze({ intervalMs: 1_000, batchSize: 500, retryMaxMs: 30_000, logEveryMs: 10_000, busyTimeoutMs: 100 });

/** What one step did. */
export type ShipStep = 'shipped' | 'idle' | 'not-a-replica' | 'failed';

export class CallShipper {
  /** Call changes the authority committed, shipments that failed. */
  readonly counts = { shipped: 0, failures: 0 };
  /** Changes not yet shipped, as last read (null until read). */
  backlog: number | null = null;
  /** Queued events left after the last shipment. */
  private eventsLeft = 0;
  private readonly settings: typeof SHIPPER_DEFAULTS;
  private readonly now: () => number;
  private readonly store: FollowedDatabase<Db>;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;
  private failuresInARow = 0;
  private failedSinceLog = 0;
  private loggedAt = -Infinity;
  /** Each router's report as last shipped (its updated_at), so an unchanged one is not sent again. */
  private readonly routersShipped = new Map<string, number>();
  private toldNotReplica = false;

  constructor(private readonly options: CallShipperOptions) {
    this.settings = { ...SHIPPER_DEFAULTS, ...definedOnly(options) };
    this.now = options.now ?? Date.now;
    this.store = new FollowedDatabase({
      path: options.dbPath,
      prepare: (db) => db,
      busyTimeoutMs: this.settings.busyTimeoutMs,
      reopenDelayMs: 1_000,
      logger: options.logger,
      holder: 'call shipping',
      now: this.now,
    });
  }

  start(): void {
    this.schedule(0);
  }

  /**
   * Stop: a shipment under way finishes, then one last shipment carries what
   * the router wrote last (its `stopped` report, the last calls), all within
   * `graceMs`; whatever does not make it ships at the next start.
   */
  async stop(graceMs = 2_000): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref?.());
    const last = (async () => {
      if (this.running) await this.running;
      await this.shipOnce();
    })();
    await Promise.race([last, grace]);
    this.store.close();
  }

  /**
   * One shipment: the calls changed since the cursor (and routers' reports
   * that changed), sent, then the cursor moved. Exposed for tests; the loop
   * calls it.
   */
  async shipOnce(): Promise<ShipStep> {
    let db: Db | undefined;
    let shipment: Shipment;
    try {
      db = this.store.get();
      if (!db) return 'failed';
      const node = nodeOf(db);
      if (node === undefined) {
        if (!this.toldNotReplica) {
          this.toldNotReplica = true;
          this.options.logger.info('call log not shipped: this file is not (yet) a replica with a node name (vnum replica names it)');
        }
        // Nothing here is meant to ship: no backlog to report (its metric stays absent, and no alert fires on a single box).
        this.backlog = null;
        return 'not-a-replica';
      }
      const { position, calls } = callsToShip(db, this.settings.batchSize);
      const now = this.now();
      const routers = listRouterStatus(db, now - ROUTER_REPORTS_KEPT_MS).filter((r) => this.routersShipped.get(r.router) !== r.updatedAt);
      const toSeq = calls.length > 0 ? calls.at(-1)!.change_seq : position.shippedSeq;
      const backlogAfter = Math.max(0, position.lastSeq - toSeq);
      const events = eventsToShip(db, this.settings.batchSize);
      shipment = { node, logId: position.logId, calls, toSeq, backlogAfter, routers, events };
      this.backlog = Math.max(0, position.lastSeq - position.shippedSeq);
      if (calls.length === 0 && routers.length === 0 && events.length === 0) return 'idle';
    } catch (error) {
      this.store.drop();
      this.failed(error);
      return 'failed';
    }
    try {
      await this.options.send(shipment, this.now());
    } catch (error) {
      this.failed(error);
      return 'failed';
    }
    // Committed on the authority: now, and only now, the cursor moves. A failure here ships the same rows again.
    this.counts.shipped += shipment.calls.length;
    for (const r of shipment.routers) this.routersShipped.set(r.router, r.updatedAt);
    this.failuresInARow = 0;
    try {
      const file = this.store.get() ?? db;
      if (shipment.calls.length > 0) markShipped(file, shipment.toSeq, this.now());
      if (shipment.events.length > 0) markEventsShipped(file, shipment.events.at(-1)!.seq);
      this.backlog = shippingBacklog(file);
      this.eventsLeft = queuedSpan(file);
    } catch (error) {
      // The same calls ship again, harmlessly; but not at once: backed off and logged at most every logEveryMs, as any
      // failure (a writer holding the file through a long apply would otherwise meet a shipment every turn of the loop).
      this.store.drop();
      this.failed(error);
      return 'failed';
    }
    return 'shipped';
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.shipOnce()
        .then((step) => {
          const more = step === 'shipped' && ((this.backlog ?? 0) > 0 || this.eventsLeft > 0);
          const pause = step === 'failed' ? Math.min(this.settings.retryMaxMs, this.settings.intervalMs * 2 ** Math.min(this.failuresInARow, 16)) : more ? 0 : this.settings.intervalMs;
          this.schedule(pause);
        })
        .finally(() => (this.running = undefined));
    }, ms);
    this.timer.unref?.();
  }

  private failed(error: unknown): void {
    this.counts.failures++;
    this.failuresInARow++;
    this.failedSinceLog++;
    const t = this.now();
    if (t - this.loggedAt < this.settings.logEveryMs) return;
    this.options.logger.warn(
      { failures: this.failedSinceLog, backlog: this.backlog, err: (error as Error)?.message ?? String(error) },
      'call log not shipped to the authority (routing and the local call log are unaffected; it ships when the authority takes it)',
    );
    this.failedSinceLog = 0;
    this.loggedAt = t;
  }
}

function definedOnly(options: CallShipperOptions): Partial<typeof SHIPPER_DEFAULTS> {
  const picked: Record<string, number> = {};
  for (const key of Object.keys(SHIPPER_DEFAULTS) as Array<keyof typeof SHIPPER_DEFAULTS>) {
    if (options[key] !== undefined) picked[key] = options[key]!;
  }
  return picked as Partial<typeof SHIPPER_DEFAULTS>;
}
