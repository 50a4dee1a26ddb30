import type { Logger } from 'pino';

/**
 * A cluster node's sliding pushes on their way to the authority, off the
 * call path: the router only offers a push (a map update); one sender works
 * through them in the background, one at a time.
 *
 * - **Coalesced per session.** A session waiting to be sent holds one push:
 *   a later offer moves its activity time forward (never back), and a call's
 *   own activity (routed, hung up) outranks a keep-alive (a call still in
 *   progress, which the authority moves only once per half idle timeout).
 * - **Bounded.** At most `maxPending` sessions wait; a push for another
 *   session past that is dropped and counted as failed.
 * - **Bounded retries.** A push the sender fails is tried `attempts` times
 *   in all, `retryDelayMs` doubling between tries, then dropped, counted
 *   and logged (at most one line per `logEveryMs`, with the count since).
 *   An authority that is down therefore costs pushes, never a call.
 */
export interface SlidePush {
  session: string;
  /** The activity's time (this node's clock). */
  at: number;
  keepAlive: boolean;
}

/** What the authority did with a push: moved the session's end, or found nothing to move (released, ended, not due). */
export type PushResult = 'pushed' | 'unchanged';

/** How a push reaches the authority; throws when it did not. */
export type PushSender = (push: SlidePush) => Promise<PushResult>;

export const PUSH_OUTCOMES = ['pushed', 'unchanged', 'failed', 'skipped'] as const;
export type PushOutcome = (typeof PUSH_OUTCOMES)[number];

export interface SlideQueueOptions {
  send: PushSender;
  logger: Logger;
  maxPending?: number;
  attempts?: number;
  retryDelayMs?: number;
  logEveryMs?: number;
  now?: () => number;
}

interface QueueSettings {
  maxPending: number;
  attempts: number;
  retryDelayMs: number;
  logEveryMs: number;
}

export const SLIDE_QUEUE_DEFAULTS: Readonly<QueueSettings> = Object.freeze({ maxPending: 10_000, attempts: 3, retryDelayMs: 500, logEveryMs: 10_000 });

export class SlideQueue {
  /** Pushes by outcome (`skipped` is the caller's: a node with no authority to send to). */
  readonly counts: Record<PushOutcome, number> = { pushed: 0, unchanged: 0, failed: 0, skipped: 0 };
  private readonly pending = new Map<string, SlidePush>();
  private readonly settings: QueueSettings;
  private readonly now: () => number;
  private running: Promise<void> | undefined;
  private closed = false;
  private wait: { timer: ReturnType<typeof setTimeout>; wake: () => void } | undefined;
  private droppedSinceLog = 0;
  private loggedAt = -Infinity;
  private lastError: string | undefined;
  private readonly dropListeners: Array<(push: SlidePush) => void> = [];

  constructor(private readonly options: SlideQueueOptions) {
    this.settings = { ...SLIDE_QUEUE_DEFAULTS, ...stripUndefined(options) };
    this.now = options.now ?? Date.now;
  }

  /** Sessions waiting to be sent. */
  get size(): number {
    return this.pending.size;
  }

  /** Queue a push (never throws, never waits). */
  offer(push: SlidePush): void {
    if (this.closed) return;
    const waiting = this.pending.get(push.session);
    if (waiting) {
      waiting.at = Math.max(waiting.at, push.at);
      waiting.keepAlive &&= push.keepAlive;
    } else if (this.pending.size >= this.settings.maxPending) {
      this.dropped(push, 'the queue is full');
      return;
    } else {
      this.pending.set(push.session, { ...push });
    }
    this.running ??= this.drain().finally(() => (this.running = undefined));
  }

  /** Called with each push dropped (so its sender can offer it again at the next activity). */
  onDrop(listener: (push: SlidePush) => void): void {
    this.dropListeners.push(listener);
  }

  /** Resolves once everything queued has been sent or dropped. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /**
   * Stop: what is queued gets up to `graceMs` to be sent; then what still
   * waits is dropped (and counted), and a push being sent is not tried again.
   */
  async close(graceMs = 1_000): Promise<void> {
    if (this.running) await Promise.race([this.idle(), new Promise((resolve) => setTimeout(resolve, graceMs).unref?.())]);
    this.closed = true;
    const left = this.pending.size;
    this.pending.clear();
    if (this.wait) {
      clearTimeout(this.wait.timer);
      this.wait.wake();
    }
    if (left > 0) {
      this.counts.failed += left;
      this.options.logger.warn({ dropped: left }, 'sliding pushes not sent at stop: those sessions slide no further from this node');
    }
  }

  private async drain(): Promise<void> {
    for (let next = this.take(); next !== undefined && !this.closed; next = this.take()) {
      const result = await this.sendWithRetries(next);
      if (result === undefined) this.dropped(next, 'the authority did not take it');
      else this.counts[result]++;
    }
  }

  private take(): SlidePush | undefined {
    const first = this.pending.values().next();
    if (first.done) return undefined;
    this.pending.delete(first.value.session);
    return first.value;
  }

  private async sendWithRetries(push: SlidePush): Promise<PushResult | undefined> {
    let delay = this.settings.retryDelayMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.options.send(push);
      } catch (error) {
        if (attempt >= this.settings.attempts || this.closed) {
          this.lastError = (error as Error).message;
          return undefined;
        }
        await this.pause(delay);
        delay *= 2;
      }
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wait = undefined;
        resolve();
      }, ms);
      timer.unref?.();
      this.wait = { timer, wake: resolve };
    });
  }

  private dropped(push: SlidePush, why: string): void {
    this.counts.failed++;
    for (const listener of this.dropListeners) listener(push);
    this.droppedSinceLog++;
    const t = this.now();
    if (t - this.loggedAt < this.settings.logEveryMs) return;
    this.options.logger.warn(
      { session: push.session, dropped: this.droppedSinceLog, why, err: this.lastError ?? null },
      "sliding push dropped: the session's end did not move on the authority (routing is unaffected; the session ends on its last end unless other calls move it)",
    );
    this.droppedSinceLog = 0;
    this.loggedAt = t;
  }
}

function stripUndefined(options: SlideQueueOptions): Partial<QueueSettings> {
  const picked: Partial<QueueSettings> = {};
  for (const key of Object.keys(SLIDE_QUEUE_DEFAULTS) as Array<keyof QueueSettings>) {
    if (options[key] !== undefined) picked[key] = options[key];
  }
  return picked;
}
