import type { Logger } from 'pino';
import type { Connection } from './connection.js';

/**
 * The connections a server holds, capped. At the cap, the oldest connection
 * that is waiting on its peer (no complete environment yet, or an unanswered
 * MSet) gives way to a new one: Asterisk sends its environment and replies
 * within milliseconds, so such a connection is a slow or idle client, and it
 * must not keep a real call out. Connections inside the handler are never
 * evicted. Nothing is ever queued.
 */
export class Connections {
  private readonly open = new Set<Connection>();
  /** Set while draining: called once no connection is left. */
  onDrained: (() => void) | undefined;

  constructor(
    readonly max: number,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.open.size;
  }

  /** Room for one more, evicting if needed: false when every connection is inside the handler. */
  makeRoom(): boolean {
    if (this.open.size < this.max) return true;
    for (const connection of this.open) {
      if (!connection.evictable) continue;
      this.log.warn({ maxConnections: this.max }, 'FastAGI at maxConnections: oldest idle connection evicted');
      connection.abort('evicted');
      return true;
    }
    return false;
  }

  add(connection: Connection): void {
    this.open.add(connection);
  }

  /** A connection stops counting as soon as it is destroyed or its socket closed, whichever is first. */
  release(connection: Connection): void {
    if (this.open.delete(connection) && this.open.size === 0 && this.onDrained !== undefined) this.onDrained();
  }

  abortAll(): void {
    for (const connection of [...this.open]) connection.abort('shutdown');
  }
}
