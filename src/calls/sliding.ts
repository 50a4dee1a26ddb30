import type { Logger } from 'pino';
import { replicaMark, type ReplicaMark } from '../replica/read-only.js';
import { findSession, slidePlan, touchSession } from '../session/sessions.js';
import type { Db } from '../store/db.js';
import type { PushOutcome, SlideQueue } from './slide-queue.js';

/**
 * Where a sliding session's activity goes (the sliding TTL, issue 14), as
 * `vnum serve`'s call log meets it:
 *
 * - **A single box** (a file no `vnum replica` has claimed): touchSession
 *   moves the end in the file, as it always did.
 * - **A cluster node** (the file is a replica): never in the file. Its
 *   session rows are the authority's copy; an end written here would be seen
 *   by no other node nor the authority and would diverge until the next
 *   change of the row overwrote it. The push is offered to the queue to the
 *   authority (`vnum serve --authority`, ./slide-queue.ts), which applies the
 *   same rule (slidePlan) to its own row; the moved end then comes back to
 *   every node, this one included, through replication. Without an authority
 *   to send to, the push is counted as skipped, and a warning says once that
 *   sliding sessions do not slide from this node's calls.
 *
 * On a node the rule is first judged on the local row (with the ends this
 * node has already sent, which replication has not brought back yet), so a
 * call in progress (a keep-alive every half second) queues a push only once
 * per half idle timeout, not every tick.
 */
export interface SlidingOptions {
  /** The queue to the authority; null when serve has no --authority. */
  queue: SlideQueue | null;
  /** How logs name the authority (never a password). */
  authority: string | null;
  logger: Logger;
}

/** What one activity did: moved the end in the file, queued a push, skipped it (a node without --authority), or nothing was due. */
export type SlideDone = 'written' | 'queued' | 'skipped' | 'none';

/** A file not yet a replica is asked again after this long (`vnum replica` may claim it after serve started). */
const RECHECK_MS = 1_000;
/** Ends sent and not yet replicated back, remembered per session: pruned past this many. */
const MAX_REMEMBERED = 10_000;

export class SlidingSessions {
  readonly counts: Record<PushOutcome, number>;
  private readonly known = new WeakMap<Db, { mark: ReplicaMark | undefined; at: number }>();
  private readonly sent = new Map<string, number>();
  private told = false;

  constructor(private readonly options: SlidingOptions) {
    this.counts = options.queue?.counts ?? { pushed: 0, unchanged: 0, failed: 0, skipped: 0 };
    // A push that was dropped moved nothing: the next activity (a keep-alive half a second later) is judged without it.
    options.queue?.onDrop((push) => this.sent.delete(push.session));
  }

  /** The file's mark, read again while it is not a replica (at most every second); logs what that means, once. */
  replica(db: Db, now = Date.now()): ReplicaMark | undefined {
    const known = this.known.get(db);
    if (known && (known.mark !== undefined || now - known.at < RECHECK_MS)) return known.mark;
    const mark = replicaMark(db);
    this.known.set(db, { mark, at: now });
    if (mark && !this.told) {
      this.told = true;
      const fields = { node: mark.node, authority: this.options.authority };
      if (this.options.queue) this.options.logger.info(fields, "replica file: sliding sessions' pushes go to the authority, never into this file");
      else {
        this.options.logger.warn(
          fields,
          "replica file and no --authority: sliding sessions do not slide from this node's calls (they end on the authority's clock; pushes are counted as skipped). Give vnum serve --authority (VNUM_AUTHORITY)",
        );
      }
    }
    return mark;
  }

  /** A bridged call's activity at `at` for session `id` (`keepAlive`: a call still in progress). Never waits on the network. */
  touch(db: Db, id: string, at: number, keepAlive = false): SlideDone {
    if (!this.replica(db)) return touchSession(db, id, at, keepAlive) ? 'written' : 'none';
    const session = findSession(db, id, at);
    if (!session) return 'none';
    const sent = this.sent.get(id);
    const end = slidePlan(
      {
        idle_ms: session.idleMs,
        released_at: session.releasedAt,
        expires_at: session.expiresAt,
        ends_at: sent !== undefined && session.endsAt !== null ? Math.max(sent, session.endsAt) : session.endsAt,
      },
      at,
      keepAlive,
    );
    if (end === undefined) return 'none';
    this.remember(id, end, at);
    if (!this.options.queue) {
      this.counts.skipped++;
      return 'skipped';
    }
    this.options.queue.offer({ session: id, at, keepAlive });
    return 'queued';
  }

  private remember(id: string, end: number, now: number): void {
    if (this.sent.size >= MAX_REMEMBERED) {
      for (const [session, until] of this.sent) if (until <= now) this.sent.delete(session);
      if (this.sent.size >= MAX_REMEMBERED) this.sent.clear();
    }
    this.sent.set(id, end);
  }
}
