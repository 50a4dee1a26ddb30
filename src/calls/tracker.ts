import type { Logger } from 'pino';
import type { AmiClient } from '../ami/client.js';
import type { AmiError } from '../ami/errors.js';
import type { RouteAnswer } from '../routing/answer.js';
import type { RouteDecision } from '../routing/decide.js';
import { recordingPath, sweepRecordings, type RecordingSettings } from './recordings.js';
import type { Db } from '../store/db.js';
import { FollowedDatabase } from '../store/followed-db.js';
import { addToCounter, type CounterName } from '../webhooks/outbox.js';
import { callFact, isUniqueid, liveUniqueids } from './facts.js';
import { recordRefusal, RefusalGate } from './refusals.js';
import { nodeOf, queueCounterToShip } from './shipping.js';
import { SlidingSessions } from './sliding.js';
import {
  applyCallFact,
  countRefusal,
  refusalReason,
  callsToHangUp,
  markCallLost,
  markLostCalls,
  recordRoutedCall,
  sessionOfCall,
  sessionsInCall,
  writeRouterStatus,
  type AmiReportedState,
} from './store.js';

/**
 * The call log and live control inside `vnum serve`:
 *
 * - a call the router bridges gets its row (session, which party, the caller
 *   channel's Uniqueid) right after the answer is sent, off the routing path;
 * - AMI's DialBegin, DialEnd and Hangup fill in ringing, answer, end, dial
 *   status and hang-up cause (./facts.ts);
 * - after every AMI login, CoreShowChannels tells which open calls ended
 *   while vnum was not listening (Asterisk restarted, or vnum was down):
 *   they are marked lost, never given an invented end;
 * - every `hangupCheckMs`, open calls whose session has ended, or for which
 *   `vnum session release --hangup` asked, are hung up with AMI Hangup. The
 *   CLI never talks to AMI: it writes the request into the database, and this
 *   is the one AMI user. Hangup names the channel by its Uniqueid, which
 *   Asterisk never reuses (channel names restart at 00000000 with Asterisk);
 * - every `heartbeatMs` and at each AMI change, a row in router_status says
 *   how AMI is doing, for `vnum health`;
 * - a call the router refuses becomes call.refused for the order system, or
 *   a count, within bounds (./refusals.ts); with or without AMI.
 *
 * Writes go through one queue on this module's own connection (followed like
 * the router's: ../store/followed-db.ts) with a short busy timeout: a CLI
 * holding the write lock delays the log by a moment but never stalls the
 * event loop that routes calls. A busy database keeps the queue for the next
 * try; any other failure drops that write with an error.
 */
export interface CallTrackerOptions {
  dbPath: string;
  /** null when AMI is not configured: no call log, and the status says "disabled". */
  ami: AmiClient | null;
  /** host:port the router was told to listen on: its key in router_status. */
  router: string;
  logger: Logger;
  hangupCheckMs?: number;
  /** A hang-up that did not end the call is tried again after this long. */
  hangupRetryMs?: number;
  heartbeatMs?: number;
  busyTimeoutMs?: number;
  /** The country the router reads numbers without + in: to tell which party a refused call came from. */
  defaultCountry?: string | undefined;
  now?: () => number;
  /** Where recordings are and how long they are kept; null: this router records nothing. */
  recordings?: RecordingSettings | null;
  /** How often recordings are measured and pruned. */
  recordingSweepMs?: number;
  /**
   * Where sliding sessions' activity goes (./sliding.ts): the file on a single box, the
   * authority on a cluster node. Absent: a node's pushes are skipped (no authority to send to).
   */
  sliding?: SlidingSessions;
}

/** Which call Asterisk routed: what AMI's events and Hangup name it by, and who called (for call.refused). */
export interface AsteriskCall {
  /** agi_uniqueid */
  uniqueId: string;
  /** agi_channel */
  channel: string;
  /** agi_callerid: only to tell which party of a session a refused call came from; never stored. */
  callerId: string;
}

interface Write {
  what: string;
  run: (db: Db) => void;
}

const MAX_QUEUE = 10_000;
const MAX_REFUSAL_KEYS = 10_000;
// Channel names as Asterisk writes them: technology/resource-sequence.
const CHANNEL = /^[A-Za-z0-9/@._:;+-]{1,200}$/;

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

export class CallTracker {
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly startedAt: number;
  private readonly store: FollowedDatabase<Db>;
  private readonly queue: Write[] = [];
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private flushPending = false;
  private dropped = 0;
  private readonly timers: Array<ReturnType<typeof setInterval>> = [];
  /** Call id -> when Hangup was last sent for it. */
  private readonly hangupTried = new Map<number, number>();
  private stopped = false;
  /** call.refused events and their counters (./refusals.ts). */
  private readonly refusals: RefusalGate;
  /** Refusals per pool number and reason, counted into the refusal table every flush. */
  private readonly poolRefusals = new Map<string, { dialled: string; reason: string; count: number; at: number }>();
  private poolRefusalsDropped = 0;
  private readonly sliding: SlidingSessions;

  constructor(private readonly options: CallTrackerOptions) {
    this.log = options.logger.child({ component: 'calls' });
    this.sliding = options.sliding ?? new SlidingSessions({ queue: null, authority: null, logger: this.log });
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.refusals = new RefusalGate({ defaultCountry: options.defaultCountry }, this.startedAt);
    this.store = new FollowedDatabase({
      path: options.dbPath,
      prepare: (db) => db,
      busyTimeoutMs: options.busyTimeoutMs ?? 100,
      reopenDelayMs: 1_000,
      logger: this.log,
      holder: 'call log',
      now: this.now,
    });
  }

  start(): void {
    const ami = this.options.ami;
    if (ami) {
      ami.on('event', (event) => {
        const fact = callFact(event);
        if (fact) {
          this.enqueue(`AMI ${event.name}`, (db) => {
            // A call's end is a sliding session's activity too (its start was, when routed).
            if (applyCallFact(db, fact) && fact.kind === 'hangup') this.touch(db, sessionOfCall(db, fact.uniqueid), fact.at);
          });
        }
      });
      ami.on('login', () => {
        this.reportStatus();
        void this.reconcile();
      });
      ami.on('disconnect', () => this.reportStatus());
      this.every(this.options.hangupCheckMs ?? 500, () => this.hangUpDue());
    }
    this.every(this.options.heartbeatMs ?? 5_000, () => this.reportStatus());
    this.every(1_000, () => this.writeRefusals());
    const recordings = this.options.recordings;
    if (recordings) {
      this.every(this.options.recordingSweepMs ?? 1_000, () =>
        this.enqueue('recordings', (db) => sweepRecordings(db, recordings, this.now(), this.log)),
      );
    }
    this.reportStatus();
  }

  /**
   * From the router, for every answer it sends: a refusal on a pool number is
   * counted per number (always), and a refused call gets its call.refused
   * event or counter (./refusals.ts); a bridged call pushes its sliding
   * session's end forward and, with AMI, gets its row. Never throws.
   */
  routed(call: AsteriskCall, answer: RouteAnswer, decision?: RouteDecision): void {
    try {
      if (this.stopped) return;
      const reason = refusalReason(answer, decision);
      if (reason !== undefined && decision?.dialled !== undefined) this.countRefusal(decision.dialled, reason);
      if (answer.status !== 'BRIDGE') {
        const refusal = this.refusals.admit(call, answer.status, answer.session, this.now());
        if (refusal) this.enqueue('refused call', (db) => void (recordRefusal(db, refusal, this.now()) === 'dropped' && this.refusals.dropped()));
        return;
      }
      if (decision?.idleMs != null) {
        const at = this.now();
        this.enqueue('sliding session', (db) => this.touch(db, answer.session, at));
      }
      if (answer.recordingUnavailable) {
        this.log.warn({ session: answer.session }, 'the session asks for recording, but this router records nothing (see --recordings-dir): not recorded');
      }
      if (!this.options.ami) return;
      if (!isUniqueid(call.uniqueId) || !CHANNEL.test(call.channel)) {
        this.log.warn({ session: answer.session }, 'bridged call without a usable agi_uniqueid or agi_channel: not in the call log');
        return;
      }
      const recordings = this.options.recordings;
      const recording = answer.call?.record === '1' && recordings ? recordingPath(recordings, call.uniqueId) : null;
      const routed = {
        uniqueid: call.uniqueId,
        channel: call.channel,
        session: answer.session,
        target: answer.target,
        via: answer.via ?? null,
        at: this.now(),
        recording,
      };
      this.enqueue('routed call', (db) => {
        if (!recordRoutedCall(db, routed)) {
          this.log.warn({ session: routed.session }, 'bridged call not recorded: the session has no such party');
        }
      });
    } catch (error) {
      this.log.error({ err: error }, 'call log: recording a routed call failed');
    }
  }

  /**
   * Refusals are added up here and written once a second, one row per pool
   * number and reason: a flood of refused calls costs a map update each, not
   * a write each. Bounded: past MAX_REFUSAL_KEYS distinct keys in one second,
   * the rest are dropped with a warning.
   */
  private countRefusal(dialled: string, reason: string): void {
    const key = `${dialled} ${reason}`;
    const counted = this.poolRefusals.get(key);
    if (counted !== undefined) {
      counted.count++;
      counted.at = this.now();
    } else if (this.poolRefusals.size < MAX_REFUSAL_KEYS) {
      this.poolRefusals.set(key, { dialled, reason, count: 1, at: this.now() });
    } else {
      this.poolRefusalsDropped++;
    }
  }

  private writeRefusals(): void {
    if (this.poolRefusals.size === 0) return;
    const counts = [...this.poolRefusals.values()];
    this.poolRefusals.clear();
    if (this.poolRefusalsDropped > 0) {
      this.log.warn({ dropped: this.poolRefusalsDropped }, 'refusal counts: too many pool numbers and reasons in one second; some refusals not counted');
      this.poolRefusalsDropped = 0;
    }
    this.enqueue('refusal counts', (db) => {
      for (const refusal of counts) countRefusal(db, refusal);
    });
  }

  /** Final status, last writes, close. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.writeRefusals();
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.flushTimer);
    this.reportStatus('stopped');
    this.flush();
    if (this.queue.length > 0) this.log.warn({ unwritten: this.queue.length }, 'call log: writes left unwritten at stop');
    this.store.close();
  }

  // -------------------------------------------------------------------------

  private every(ms: number, work: () => void): void {
    const timer = setInterval(() => {
      try {
        work();
      } catch (error) {
        this.log.error({ err: error }, 'call log task failed');
      }
    }, ms);
    timer.unref?.();
    this.timers.push(timer);
  }

  private reportStatus(final?: 'stopped'): void {
    const ami = this.options.ami;
    const status = ami?.status();
    const state: AmiReportedState = final ?? (status ? status.state : 'disabled');
    const row = {
      router: this.options.router,
      pid: process.pid,
      startedAt: this.startedAt,
      updatedAt: this.now(),
      amiState: state,
      amiSince: status?.since ?? null,
      amiError: status?.lastError?.slice(0, 300) ?? null,
      asteriskVersion: status?.asteriskVersion ?? null,
    };
    this.enqueue('router status', (db) => writeRouterStatus(db, row));
    const counts = this.refusals.takeCounts();
    if (counts.size > 0) {
      this.enqueue('refusal counts', (db) => {
        // A cluster node's counters go to the authority's outbox with its shipper (./shipping.ts).
        // A full queue keeps them in memory (the router's), to be queued with the next report.
        const node = nodeOf(db) !== undefined;
        const kept = new Map<CounterName, number>();
        for (const [name, by] of counts) {
          if (!node) addToCounter(db, name, by);
          else if (!queueCounterToShip(db, name, by, this.now())) kept.set(name, by);
        }
        if (kept.size > 0) this.refusals.giveBack(kept);
      });
    }
  }

  private async reconcile(): Promise<void> {
    const ami = this.options.ami;
    if (!ami) return;
    try {
      const live = liveUniqueids(await ami.actionList('CoreShowChannels', {}, 10_000));
      const at = this.now();
      this.enqueue('reconcile', (db) => {
        const lost = markLostCalls(db, live, at);
        if (lost > 0) this.log.warn({ lost }, 'calls that ended while AMI was not connected: marked lost (end unknown)');
      });
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, 'CoreShowChannels failed: calls that ended while AMI was down stay open until hung up (the AMI user needs write=reporting)');
    }
  }

  private hangUpDue(): void {
    const ami = this.options.ami;
    if (!ami?.loggedIn || this.stopped) return;
    const db = this.database();
    if (!db) return;
    const now = this.now();
    let due;
    try {
      // Calls in progress keep their sliding sessions alive, before any is judged ended.
      for (const session of sessionsInCall(db)) this.touch(db, session, now, true);
      due = callsToHangUp(db, now);
    } catch (error) {
      if (!isBusy(error)) {
        this.log.error({ err: error }, 'call log: reading calls to hang up failed');
        this.store.drop(0);
      }
      return;
    }
    const dueIds = new Set<number>();
    for (const call of due) {
      dueIds.add(call.id);
      const tried = this.hangupTried.get(call.id);
      if (tried !== undefined && now - tried < (this.options.hangupRetryMs ?? 2_000)) continue;
      this.hangupTried.set(call.id, now);
      ami.action('Hangup', { Channel: call.uniqueid, Cause: 16 }).then(
        () => this.log.info({ call: call.id, session: call.session, reason: call.reason }, 'call hung up through AMI'),
        (error: AmiError) => {
          if (error.code === 'AMI_ACTION_FAILED' && /no such channel/i.test(error.message)) {
            // Gone already, and its Hangup event missed: the end is unknown.
            this.enqueue('lost call', (d) => void markCallLost(d, call.id, this.now()));
          } else {
            this.log.warn({ call: call.id, session: call.session, err: error.message }, 'AMI Hangup failed: will try again');
          }
        },
      );
    }
    for (const id of this.hangupTried.keys()) if (!dueIds.has(id)) this.hangupTried.delete(id);
  }

  /**
   * A sliding session's activity (a no-op for any other session): written into the file on a
   * single box, sent to the authority from a cluster node (./sliding.ts); `keepAlive` moves the end
   * only once per half idle timeout.
   */
  private touch(db: Db, session: string | undefined, at: number, keepAlive = false): void {
    if (session === undefined) return;
    const done = this.sliding.touch(db, session, at, keepAlive);
    if (done === 'written' && !keepAlive) this.log.debug({ session }, 'sliding session pushed forward');
  }

  private enqueue(what: string, run: (db: Db) => void): void {
    if (this.queue.length >= MAX_QUEUE) {
      this.queue.shift();
      if (this.dropped++ % 1000 === 0) this.log.error({ dropped: this.dropped }, 'call log queue full: oldest writes dropped');
    }
    this.queue.push({ what, run });
    if (!this.flushPending) {
      this.flushPending = true;
      setImmediate(() => {
        this.flushPending = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    while (this.queue.length > 0) {
      const db = this.database();
      if (!db) return this.retryFlush(1_000);
      const write = this.queue[0]!;
      try {
        write.run(db);
        this.queue.shift();
      } catch (error) {
        if (isBusy(error)) return this.retryFlush(250);
        this.queue.shift();
        this.log.error({ err: error, write: write.what }, 'call log write failed: dropped');
        this.store.drop(0);
      }
    }
  }

  private retryFlush(ms: number): void {
    if (this.flushTimer !== undefined || this.stopped) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flush();
    }, ms);
    this.flushTimer.unref?.();
  }

  private database(): Db | undefined {
    try {
      return this.store.get();
    } catch (error) {
      this.log.error({ err: error }, 'call log: database unusable; retrying');
      return undefined;
    }
  }
}
