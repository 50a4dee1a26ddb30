import type { Agent } from 'node:http';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { ClaimedEvent, DeliveryStore } from './delivery-store.js';
import { eventBody, withRealNumbers } from './events.js';
import { post, postAgent } from './post.js';
import { EVENT_ID_HEADER, SIGNATURE_HEADER, signatureHeader } from './signature.js';
import type { RetryPolicy } from './retry.js';

/**
 * The deliverer: takes due events from the outbox, POSTs each, signed, to
 * the receiver, and records the outcome (README, "Webhooks").
 *
 * - At least once: an event is done only when a 2xx has come back and that
 *   is recorded; anything else (an error status, a redirect, a refused or
 *   dropped connection, no answer within the timeout, this process killed)
 *   leaves it to be sent again.
 * - In order per session: only the oldest open event of a session is ever
 *   due (the outbox's rule), so an event is first sent after every earlier
 *   event of its session got its 2xx. Sessions do not wait for each other:
 *   up to `concurrency` sessions are sent at once.
 * - Each claim leases the event for the timeout and a margin (leaseFor); a deliverer
 *   killed mid-flight leaves leases that run out, and the events are sent
 *   again by whoever delivers next. Several deliverers on one store share
 *   the work without sending one event twice at the same time.
 *
 * It also runs the clock's work: every `tickMs`, `tick` (session.ended for
 * sessions whose end has come); every hour, events done a week ago are
 * deleted.
 */
/** Where and how to send (judged from flags and the environment by src/cli/webhook-settings.ts). */
export interface WebhookSettings {
  url: URL;
  /** One or two: every request carries a signature for each. */
  secrets: string[];
  timeoutMs: number;
  concurrency: number;
  retry: RetryPolicy;
  /** Allow a receiver on this host (loopback, its own addresses, link-local). */
  allowLocal: boolean;
  /** Add the parties' real numbers to the payloads. */
  realNumbers: boolean;
}

export interface DelivererOptions {
  store: DeliveryStore;
  settings: WebhookSettings;
  logger: Logger;
  /** The clock's work, run every `tickMs` (the session.ended sweep). */
  tick?: (now: number) => void | Promise<unknown>;
  tickMs?: number;
  /** When nothing is due, look again after this long. */
  pollMs?: number;
  heartbeatMs?: number;
  /** Events done longer ago than this are deleted. */
  keepMs?: number;
  userAgent?: string;
  now?: () => number;
  random?: () => number;
}

export interface DelivererStatus {
  inFlight: number;
  /** Since this process started. */
  delivered: number;
  failedAttempts: number;
  parked: number;
  lastError: string | null;
  lastDeliveredAt: number | null;
}

/** How far past the timeout a lease runs: enough for the outcome to be recorded (as long again as the timeout, at most 2 s). */
export function leaseFor(timeoutMs: number): number {
  return timeoutMs + Math.min(timeoutMs, 2_000);
}
const PRUNE_EVERY_MS = 3_600_000;
const STORE_RETRY_MS = 1_000;
export const KEEP_DONE_MS = 7 * 86_400_000;

export class WebhookDeliverer {
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly agent: Agent;
  private readonly inFlight = new Map<number, Promise<void>>();
  private readonly startedAt: number;
  private readonly instance: string;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private lastTick = 0;
  private lastPrune = 0;
  private running = false;
  /** The pump under way (the store is asynchronous): one at a time; a wake-up meanwhile runs it again at once. */
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;
  private readonly counts: DelivererStatus = { inFlight: 0, delivered: 0, failedAttempts: 0, parked: 0, lastError: null, lastDeliveredAt: null };

  constructor(private readonly options: DelivererOptions) {
    this.log = options.logger.child({ component: 'webhooks' });
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.instance = `${hostname()}:${process.pid}`;
    this.agent = postAgent(options.settings.url, options.settings.concurrency, options.settings.allowLocal);
  }

  /** Turns recording on and starts sending (recording is on when the promise resolves; a store that cannot do it rejects). */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      await this.options.store.startRecording(this.now());
    } catch (error) {
      this.running = false;
      throw error;
    }
    void this.heartbeat();
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.options.heartbeatMs ?? 5_000);
    this.heartbeatTimer.unref?.();
    this.schedule(0);
  }

  /** Stop taking events; wait for those in flight (each ends by its timeout at the latest). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.timer);
    clearInterval(this.heartbeatTimer);
    await this.pumping;
    await Promise.allSettled([...this.inFlight.values()]);
    this.agent.destroy();
    await this.heartbeat(true);
  }

  /** What this process has done: for logs and metrics (the outbox's own counts are in webhookStatus). */
  status(): DelivererStatus {
    return { ...this.counts, inFlight: this.inFlight.size };
  }

  // -------------------------------------------------------------------------

  private schedule(ms: number): void {
    if (!this.running) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.wake(), ms);
  }

  private wake(): void {
    if (!this.running) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      if (this.pumpAgain) {
        this.pumpAgain = false;
        this.schedule(0);
      }
    });
  }

  /** Claim what is due, up to the free slots; called again as each delivery ends. */
  private async pump(): Promise<void> {
    const { settings, store } = this.options;
    let claimed: ClaimedEvent[] = [];
    let failed = false;
    try {
      const now = this.now();
      await this.clockWork(now);
      const free = settings.concurrency - this.inFlight.size;
      if (free > 0) claimed = await store.claim(now, free, leaseFor(settings.timeoutMs));
    } catch (error) {
      failed = true;
      this.fail('the outbox cannot be read', error);
    }
    for (const event of claimed) {
      if (this.inFlight.has(event.seq)) continue;
      const delivery = this.deliver(event).finally(() => {
        this.inFlight.delete(event.seq);
        this.schedule(0);
      });
      this.inFlight.set(event.seq, delivery);
    }
    // A store that fails (busy for longer than its wait, a disk error) is tried again a second later, not in a tight loop.
    this.schedule(failed ? STORE_RETRY_MS : (this.options.pollMs ?? 250));
  }

  /** The clock's work; a failure here is logged and never stops delivery. */
  private async clockWork(now: number): Promise<void> {
    const { tick, store } = this.options;
    try {
      if (tick && now - this.lastTick >= (this.options.tickMs ?? 1_000)) {
        this.lastTick = now;
        await tick(now);
      }
      if (now - this.lastPrune >= PRUNE_EVERY_MS) {
        this.lastPrune = now;
        const removed = await store.prune(now, this.options.keepMs ?? KEEP_DONE_MS);
        if (removed > 0) this.log.info({ removed }, 'webhook events delivered over a week ago deleted');
      }
    } catch (error) {
      this.fail('the session.ended sweep or the pruning failed (tried again in a second)', error);
    }
  }

  private async deliver(event: ClaimedEvent): Promise<void> {
    const { settings, store } = this.options;
    let outcome: string | null;
    try {
      outcome = await this.send(event);
    } catch (error) {
      outcome = (error as Error).message || String(error);
    }
    try {
      const now = this.now();
      if (outcome === null) {
        await store.delivered(event, now);
        this.counts.delivered++;
        this.counts.lastDeliveredAt = now;
        return;
      }
      this.counts.failedAttempts++;
      this.counts.lastError = outcome;
      const next = await store.failed(event, now, outcome, settings.retry, this.options.random);
      const context = { event: event.id, type: event.type, session: event.session, attempts: event.attempts, err: outcome };
      if (next.parked) {
        this.counts.parked++;
        this.log.error(context, 'webhook event parked: retried for the whole window (vnum webhooks retry sends it again)');
      } else {
        this.log.warn({ ...context, retryIn: next.nextAt - now }, 'webhook delivery failed: will retry');
      }
    } catch (error) {
      // Not recorded: the lease runs out and the event is sent again (at least once).
      this.fail(`the outcome of ${event.id} could not be recorded`, error);
    }
  }

  /** null on a 2xx; otherwise what went wrong, for the operator. */
  private async send(event: ClaimedEvent): Promise<string | null> {
    const { settings, store } = this.options;
    let data = event.data;
    if (settings.realNumbers) {
      const parties = await store.partiesOf(event.session);
      if (parties) data = withRealNumbers(event.type, data, parties);
    }
    const body = eventBody(event, data);
    const headers = {
      'Content-Type': 'application/json',
      'User-Agent': this.options.userAgent ?? 'vnum-webhooks',
      [EVENT_ID_HEADER]: event.id,
      [SIGNATURE_HEADER]: signatureHeader(body, settings.secrets, Math.floor(this.now() / 1000)),
    };
    const result = await post(settings.url, body, headers, { timeoutMs: settings.timeoutMs, allowLocal: settings.allowLocal, agent: this.agent });
    if (result.status >= 200 && result.status < 300) return null;
    return `HTTP ${result.status}${result.excerpt ? `: ${result.excerpt}` : ''}`;
  }

  private async heartbeat(stopped = false): Promise<void> {
    try {
      await this.options.store.heartbeat({
        instance: this.instance,
        url: this.options.settings.url.href,
        pid: process.pid,
        startedAt: this.startedAt,
        updatedAt: this.now(),
        inFlight: this.inFlight.size,
        lastError: this.counts.lastError,
        stopped,
      });
    } catch (error) {
      this.fail('cannot write the deliverer\'s status', error);
    }
  }

  private fail(what: string, error: unknown): void {
    this.counts.lastError = `${what}: ${(error as Error).message ?? String(error)}`;
    this.log.error({ err: error }, what);
  }
}
