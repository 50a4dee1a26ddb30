/**
 * A FastAGI server: Asterisk connects once per call, sends its environment,
 * and the server hands it to a handler and writes back, with ONE `EXEC MSet`,
 * the channel variables the handler gives. It knows FastAGI and Asterisk,
 * nothing of what the variables mean: vnum's answer is src/routing/answer.ts,
 * wired in by `vnum serve`.
 *
 * It guards the door: peers outside the allow-list are destroyed before a
 * byte is read; at most `maxConnections` at once (./connections.ts); every
 * connection has a hard deadline (./connection.ts); close() drains.
 */
import type { AddressInfo, Socket } from 'node:net';
import pino, { type Logger } from 'pino';
import { AllowList, DEFAULT_ALLOW } from './allow-list.js';
import {
  Connection,
  OUTCOMES,
  prepareAnswer,
  refuse,
  type AgiAnswer,
  type AgiHandler,
  type ConnectionOwner,
  type Outcome,
  type PreparedAnswer,
} from './connection.js';
import { Connections } from './connections.js';
import { listen } from './listener.js';

export type { AgiAnswer, AgiHandler, Outcome };

/**
 * Why a connection was destroyed before a byte was read: its peer is not in
 * the allow-list, every slot is taken by a call being routed, the server is
 * closing, or setting it up failed.
 */
export const REFUSALS = ['not-allowed', 'max-connections', 'closing', 'setup-failed'] as const;
export type Refusal = (typeof REFUSALS)[number];

/** Running totals since the server started, for metrics: read them, never write. */
export interface FastAgiCounts {
  readonly refused: Readonly<Record<Refusal, number>>;
  /** Connections served, by how each ended (answered, deadline, evicted...). */
  readonly ended: Readonly<Record<Outcome, number>>;
}
export type { AgiEnvironment } from './wire.js';

export interface FastAgiServerOptions {
  host?: string;
  /** 0 picks a free port (tests); see {@link FastAgiServer.address}. */
  port?: number;
  /** Peer addresses or CIDR subnets allowed to connect; default loopback only. */
  allow?: readonly string[];
  /** Concurrent connections; further ones are destroyed at once, never queued. */
  maxConnections?: number;
  /** Hard limit on one connection, connect to close; then the socket is destroyed. */
  deadlineMs?: number;
  /** Silent when absent. */
  logger?: Logger;
  handler: AgiHandler;
  /** Written instead when the handler throws, rejects, or answers what cannot be written. */
  fallback: AgiAnswer;
}

export interface FastAgiServer {
  /** Where it actually listens. */
  address(): { host: string; port: number };
  /** Connections currently open. */
  connections(): number;
  /** Refused and ended connections so far (the same object every time, kept up to date). */
  counts(): FastAgiCounts;
  /** Stop accepting, let open connections finish for up to `drainMs`, destroy the rest; resolves when all are gone. */
  close(drainMs?: number): Promise<void>;
}

export const FASTAGI_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  port: 4573,
  maxConnections: 256,
  deadlineMs: 2000,
});

/** The longest delay a Node timer keeps: a longer one fires after 1 ms. */
const TIMER_MAX_MS = 2 ** 31 - 1;

function positiveInteger(name: string, value: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || value <= 0 || value > max) throw new RangeError(`${name} must be an integer from 1 to ${max}, got ${value}`);
  return value;
}

function zeros<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((key) => [key, 0])) as Record<K, number>;
}

class Server implements ConnectionOwner {
  readonly connections: Connections;
  readonly counts = { refused: zeros(REFUSALS), ended: zeros(OUTCOMES) };
  closing = false;

  constructor(
    readonly log: Logger,
    readonly handler: AgiHandler,
    readonly fallback: PreparedAnswer,
    readonly allow: AllowList,
    maxConnections: number,
    readonly deadlineMs: number,
  ) {
    this.connections = new Connections(maxConnections, log);
  }

  accept(socket: Socket): void {
    try {
      if (this.closing) return this.refuse(socket, 'closing');
      const address = socket.remoteAddress;
      // Before anything is read: a refused peer never gets a byte parsed.
      if (!this.allow.allows(address)) {
        this.refuse(socket, 'not-allowed');
        this.log.warn({ address: address ?? 'unknown' }, 'FastAGI connection refused: address not in allow-list');
        return;
      }
      if (!this.connections.makeRoom()) {
        this.refuse(socket, 'max-connections');
        this.log.warn({ address, maxConnections: this.connections.max }, 'FastAGI connection refused: at maxConnections');
        return;
      }
      this.connections.add(new Connection(this, socket));
    } catch (e) {
      this.log.error({ err: e }, 'FastAGI connection setup failed');
      this.refuse(socket, 'setup-failed');
    }
  }

  private refuse(socket: Socket, why: Refusal): void {
    this.counts.refused[why]++;
    refuse(socket);
  }

  release(connection: Connection): void {
    this.connections.release(connection);
  }

  ended(outcome: Outcome): void {
    this.counts.ended[outcome]++;
  }
}

export async function startFastAgiServer(options: FastAgiServerOptions): Promise<FastAgiServer> {
  if (typeof options.handler !== 'function') throw new TypeError('startFastAgiServer: handler must be a function');
  const host = options.host ?? FASTAGI_DEFAULTS.host;
  if (typeof host !== 'string' || host.length === 0) throw new TypeError('startFastAgiServer: host must be a non-empty address');
  const port = options.port ?? FASTAGI_DEFAULTS.port;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`startFastAgiServer: bad port ${port}`);
  const maxConnections = positiveInteger('maxConnections', options.maxConnections ?? FASTAGI_DEFAULTS.maxConnections);
  const deadlineMs = positiveInteger('deadlineMs', options.deadlineMs ?? FASTAGI_DEFAULTS.deadlineMs, TIMER_MAX_MS);
  const allow = new AllowList(options.allow ?? DEFAULT_ALLOW);
  const log = (options.logger ?? pino({ level: 'silent' })).child({ component: 'agi' });

  let fallback: PreparedAnswer;
  try {
    fallback = prepareAnswer(options.fallback);
  } catch (e) {
    throw new TypeError(`startFastAgiServer: fallback must be an answer that can be written (${(e as Error).message})`);
  }
  const core = new Server(log, options.handler, fallback, allow, maxConnections, deadlineMs);
  const server = await listen(host, port, (socket) => core.accept(socket));
  // After bind: accept errors (EMFILE under a flood) must not crash the process.
  server.on('error', (error: NodeJS.ErrnoException) => {
    log.warn({ code: error.code }, 'FastAGI listener error');
  });
  const bound = server.address() as AddressInfo;
  const address = Object.freeze({ host: bound.address, port: bound.port });
  log.info({ host: address.host, port: address.port, allow: allow.entries, maxConnections, deadlineMs }, 'FastAGI router listening');

  let closed: Promise<void> | undefined;
  return {
    address: () => address,
    connections: () => core.connections.size,
    counts: () => core.counts,
    close(drainMs = deadlineMs): Promise<void> {
      if (closed !== undefined) return closed;
      if (!(drainMs >= 0 && drainMs <= TIMER_MAX_MS)) return Promise.reject(new RangeError(`drainMs must be from 0 to ${TIMER_MAX_MS}, got ${drainMs}`));
      core.closing = true;
      const open = core.connections;
      closed = new Promise<void>((resolve) => {
        let drainTimer: ReturnType<typeof setTimeout> | undefined;
        let listenerClosed = false;
        const settle = (): void => {
          if (!listenerClosed || open.size > 0) return;
          open.onDrained = undefined;
          if (drainTimer !== undefined) clearTimeout(drainTimer);
          log.info('FastAGI router closed');
          resolve();
        };
        open.onDrained = settle;
        // Node reports the listener closed once its own connection count is zero;
        // ours are released on their sockets' close events, which may come later.
        server.close(() => {
          listenerClosed = true;
          settle();
        });
        if (open.size > 0) drainTimer = setTimeout(() => open.abortAll(), drainMs);
      });
      return closed;
    },
  };
}
