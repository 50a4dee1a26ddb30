/**
 * The FastAGI router: Asterisk connects once per inbound call, sends its
 * environment, and we answer with ONE `EXEC MSet` setting VNUM_STATUS,
 * VNUM_TARGET, VNUM_CLI and VNUM_SESSION, wait for its 200, and hang up.
 *
 * Asterisk waits forever on a connected FastAGI server, so every session has
 * a hard deadline; anything that goes wrong ends in a closed socket without
 * a BRIDGE, and the dialplan fails closed on a missing VNUM_STATUS.
 *
 * ding-dong is used for what it does safely: creating and binding the
 * listening server. Its per-connection Context is not used (see
 * `listen()` below); the wire is ./wire.ts.
 */
import type { AddressInfo, Server, Socket } from 'node:net';
import dingDong from 'ding-dong';
import type { Logger } from 'pino';
import { createLogger } from '../src/log.js';
import { TIMER_MAX_MS } from '../src/settings.js';
import { AllowList, DEFAULT_ALLOW } from './allow-list.js';
import { HEALTH_PROBE_ANSWER, HEALTH_PROBE_SCRIPT } from './health-probe.js';
import { AgiConnection, buildMSet, type AgiEnvironment, type AgiError, type AgiPeer, type AgiReply } from './wire.js';

// The statuses are the routing decision's own: one definition for the router and `vnum route`.
import { ROUTE_STATUSES, type RouteStatus } from '../src/routing/decide.js';
export { ROUTE_STATUSES, type RouteStatus };

/** The call as Asterisk describes it, verbatim (a missing caller ID is the literal `unknown`). */
export interface InboundCall {
  /** agi_callerid */
  readonly callerId: string;
  /** agi_extension: the dialled DID as the dialplan matched it. */
  readonly extension: string;
  /** agi_dnid */
  readonly dnid: string;
  /** agi_uniqueid */
  readonly uniqueId: string;
  /** agi_channel */
  readonly channel: string;
  /** agi_request: the full agi:// URL. */
  readonly request: string;
}

/** The channel variables the dialplan branches on. */
export interface RouteAnswer {
  VNUM_STATUS: RouteStatus;
  VNUM_TARGET: string;
  VNUM_CLI: string;
  VNUM_SESSION: string;
}

export type RouteFunction = (call: InboundCall) => RouteAnswer | PromiseLike<RouteAnswer>;

export interface RouterOptions {
  host?: string;
  /** 0 picks a free port (tests); see {@link Router.address}. */
  port?: number;
  /** Peer addresses or CIDR subnets allowed to connect; default loopback only. */
  allow?: readonly string[];
  /** Concurrent sessions; further connections are destroyed at once, never queued. */
  maxConnections?: number;
  /** Hard limit on one session, connect to close; then the socket is destroyed. */
  sessionDeadlineMs?: number;
  logger?: Logger;
  route: RouteFunction;
}

export interface Router {
  /** Where it actually listens. */
  address(): { host: string; port: number };
  /** Sessions currently open. */
  connections(): number;
  /** Stop accepting, let open sessions finish for up to `drainMs`, destroy the rest; resolves when all are gone. */
  close(drainMs?: number): Promise<void>;
}

export const ROUTER_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  port: 4573,
  maxConnections: 256,
  sessionDeadlineMs: 2000,
});

// ---------------------------------------------------------------------------
// The answer

const STATUS_SET: ReadonlySet<string> = new Set(ROUTE_STATUSES);
/** Every value the router writes into the dialplan. Nothing Asterisk or a shell would interpret. */
const SAFE_VALUE = /^[A-Za-z0-9+._:-]{0,64}$/;

function isSafeValue(value: unknown): value is string {
  return typeof value === 'string' && SAFE_VALUE.test(value);
}

interface Answer {
  readonly status: RouteStatus;
  readonly session: string;
  readonly command: string;
}

const ERROR_ANSWER: Answer = Object.freeze({
  status: 'ERROR',
  session: '',
  command: buildMSet([
    ['VNUM_STATUS', 'ERROR'],
    ['VNUM_TARGET', ''],
    ['VNUM_CLI', ''],
    ['VNUM_SESSION', ''],
  ]),
});

/**
 * The MSet for what `route` returned, or undefined when it fails validation.
 * Fail closed: a BRIDGE needs both a target and a presented CLI (an empty CLI
 * could let the caller's real number through), and any other status carries
 * no number at all.
 */
export function answerFor(raw: unknown): Answer | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const answer = raw as Record<string, unknown>;
  const status = answer.VNUM_STATUS;
  const { VNUM_TARGET: routedTarget, VNUM_CLI: routedCli, VNUM_SESSION: session } = answer;
  if (typeof status !== 'string' || !STATUS_SET.has(status)) return undefined;
  if (!isSafeValue(routedTarget) || !isSafeValue(routedCli) || !isSafeValue(session)) return undefined;
  const bridge = status === 'BRIDGE';
  if (bridge && (routedTarget === '' || routedCli === '')) return undefined;
  const target = bridge ? routedTarget : '';
  const cli = bridge ? routedCli : '';
  return {
    status: status as RouteStatus,
    session,
    command: buildMSet([
      ['VNUM_STATUS', status],
      ['VNUM_TARGET', target],
      ['VNUM_CLI', cli],
      ['VNUM_SESSION', session],
    ]),
  };
}

// ---------------------------------------------------------------------------
// Logging

/**
 * Warnings come from peers (refusals, garbage): under attack they would flood
 * the log, so at most `perSecond` lines are written and the rest counted into
 * the next line's `suppressed`.
 */
class WarnLimiter {
  private windowStart = 0;
  private written = 0;
  private suppressed = 0;
  constructor(
    private readonly log: Logger,
    private readonly perSecond = 20,
  ) {}

  warn(fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.written = 0;
    }
    if (this.written >= this.perSecond) {
      this.suppressed++;
      return;
    }
    this.written++;
    if (this.suppressed > 0) {
      fields.suppressed = this.suppressed;
      this.suppressed = 0;
    }
    this.log.warn(fields, message);
  }
}

// ---------------------------------------------------------------------------
// Sessions

/**
 * environment: reading the environment (waiting on Asterisk); routing: inside
 * `route` (waiting on us); answering: MSet written, waiting for its reply;
 * done: waiting for the socket to close.
 */
type Stage = 'environment' | 'routing' | 'answering' | 'done';

type Outcome = 'answered' | 'probe' | 'deadline' | 'protocol' | 'peer-closed' | 'evicted' | 'shutdown' | 'internal';

const kSession = Symbol('vnum.agi.session');
type SessionSocket = Socket & { [kSession]?: RouterSession };

// Listeners shared by every socket (`this` is the socket): nothing allocated per connection.
function onSocketData(this: SessionSocket, chunk: string): void {
  const session = this[kSession];
  if (session === undefined) return;
  try {
    session.wire.push(chunk);
  } catch (e) {
    session.internalError(e);
  }
}
function onSocketError(this: SessionSocket, error: NodeJS.ErrnoException): void {
  const session = this[kSession];
  if (session !== undefined && session.socketError === undefined) session.socketError = error.code ?? error.message;
}
function onSocketClose(this: SessionSocket): void {
  this[kSession]?.finish();
}
function ignoreError(): void {}
function onSessionDeadline(session: RouterSession): void {
  session.deadline();
}

class RouterSession implements AgiPeer {
  readonly wire: AgiConnection;
  private readonly timer: ReturnType<typeof setTimeout>;
  private readonly startedAt = performance.now();
  stage: Stage = 'environment';
  private outcome: Outcome | undefined;
  private status: RouteStatus | undefined;
  private callerId = '';
  private extension = '';
  /** What an operator matches a log line to a call by: agi_uniqueid, agi_channel, the session routed to. */
  private uniqueId = '';
  private channel = '';
  private session = '';
  socketError: string | undefined;

  constructor(
    private readonly core: RouterCore,
    private readonly socket: SessionSocket,
  ) {
    this.wire = new AgiConnection(this);
    socket[kSession] = this;
    socket.setEncoding('utf8');
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    this.timer = setTimeout(onSessionDeadline, core.sessionDeadlineMs, this);
  }

  write(data: string): void {
    if (this.socket.writable) this.socket.write(data);
  }

  onEnvironment(env: AgiEnvironment): void {
    if (this.stage !== 'environment') return;
    if (env.get('agi_network_script') === HEALTH_PROBE_SCRIPT) {
      this.answerProbe();
      return;
    }
    // Asterisk always sends both (a missing caller as `unknown`): without them this is not Asterisk.
    if (!env.has('agi_callerid') || !env.has('agi_extension')) {
      this.end('protocol');
      this.core.release(this);
      this.core.warnings.warn({ address: this.socket.remoteAddress }, 'FastAGI environment lacks agi_callerid or agi_extension: connection dropped');
      this.socket.destroy();
      return;
    }
    this.stage = 'routing';
    const call: InboundCall = {
      callerId: env.get('agi_callerid') ?? '',
      extension: env.get('agi_extension') ?? '',
      dnid: env.get('agi_dnid') ?? '',
      uniqueId: env.get('agi_uniqueid') ?? '',
      channel: env.get('agi_channel') ?? '',
      request: env.get('agi_request') ?? '',
    };
    this.callerId = call.callerId;
    this.extension = call.extension;
    this.uniqueId = call.uniqueId;
    this.channel = call.channel;
    let routed: RouteAnswer | PromiseLike<RouteAnswer>;
    const route = this.core.route; // called bare: route's `this` is not our business
    try {
      routed = route(call);
    } catch (e) {
      this.routeFailed(e);
      return;
    }
    if (routed !== null && typeof routed === 'object' && typeof (routed as PromiseLike<unknown>).then === 'function') {
      // Promise.resolve also survives a thenable whose `then` throws.
      Promise.resolve(routed)
        .then(
          (value) => this.answer(value),
          (e: unknown) => this.routeFailed(e),
        )
        .catch((e: unknown) => this.internalError(e));
    } else {
      this.answer(routed);
    }
  }

  /** A health probe (./health-probe.ts): one fixed answer; `route` and the store are never touched. */
  private answerProbe(): void {
    this.stage = 'answering';
    this.wire.send(HEALTH_PROBE_ANSWER).then(
      () => {
        this.end('probe');
        this.wire.close();
        this.socket.end();
      },
      ignoreError, // closed first: finish() logs why
    );
  }

  onFailure(error: AgiError): void {
    this.end('protocol');
    this.core.release(this);
    this.core.warnings.warn({ code: error.code, address: this.socket.remoteAddress }, 'FastAGI protocol error: connection dropped');
    this.socket.destroy();
  }

  private routeFailed(error: unknown): void {
    this.core.log.error({ err: error }, 'route failed: answering VNUM_STATUS=ERROR');
    this.respond(ERROR_ANSWER);
  }

  private answer(raw: unknown): void {
    let answer: Answer | undefined;
    try {
      answer = answerFor(raw);
    } catch (e) {
      this.routeFailed(e);
      return;
    }
    if (answer === undefined) {
      const status: unknown = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>).VNUM_STATUS : raw;
      this.core.log.error(
        { status: typeof status === 'string' ? status.slice(0, 64) : typeof status },
        'route returned values that fail validation: answering VNUM_STATUS=ERROR',
      );
      answer = ERROR_ANSWER;
    }
    this.respond(answer);
  }

  private respond(answer: Answer): void {
    // The session may have ended while `route` ran (deadline, hang-up, shutdown).
    if (this.stage !== 'routing') return;
    // A synchronous `route` that blocked the event loop past the deadline kept
    // the deadline timer from firing: the answer is too late all the same.
    if (performance.now() - this.startedAt >= this.core.sessionDeadlineMs) {
      this.deadline();
      return;
    }
    this.stage = 'answering';
    this.status = answer.status;
    this.session = answer.session;
    this.wire.send(answer.command).then(
      (reply) => this.answered(reply),
      ignoreError, // closed first: finish() logs why
    );
  }

  private answered(reply: AgiReply): void {
    this.end('answered');
    try {
      if (reply.code !== 200) {
        this.core.warnings.warn({ code: reply.code }, 'Asterisk did not accept the MSet answer');
      }
      this.wire.close();
      this.socket.end();
    } catch (e) {
      this.internalError(e);
    }
  }

  private end(outcome: Outcome): void {
    if (this.outcome === undefined) this.outcome = outcome;
    this.stage = 'done';
  }

  /** Waiting on the peer rather than on `route`: a slow or idle client may make room for a new call. */
  get evictable(): boolean {
    return this.stage !== 'routing';
  }

  abort(outcome: Outcome): void {
    this.end(outcome);
    this.core.release(this);
    this.wire.close();
    this.socket.destroy();
  }

  deadline(): void {
    if (this.outcome === undefined) {
      this.core.warnings.warn(
        { stage: this.stage, address: this.socket.remoteAddress, deadlineMs: this.core.sessionDeadlineMs },
        'FastAGI session deadline passed: connection destroyed',
      );
    }
    this.abort('deadline');
  }

  internalError(error: unknown): void {
    this.core.log.error({ err: error }, 'FastAGI session failed');
    this.abort('internal');
  }

  /** The socket is gone, whatever the reason: the one place a session ends. */
  finish(): void {
    clearTimeout(this.timer);
    this.wire.close();
    this.socket[kSession] = undefined;
    this.core.release(this);
    if (this.outcome === undefined) this.end('peer-closed');
    const log = this.core.log;
    if (log.isLevelEnabled('debug')) {
      log.debug(
        {
          status: this.status,
          outcome: this.outcome,
          session: this.session || undefined,
          uniqueid: clip(this.uniqueId) || undefined,
          channel: clip(this.channel) || undefined,
          durationUs: Math.round((performance.now() - this.startedAt) * 1000),
          caller: clip(this.callerId),
          dialled: clip(this.extension),
          hangups: this.wire.hangups,
          socketError: this.socketError,
        },
        'FastAGI session',
      );
    }
  }
}

/** A caller's own text, bounded for a log line (the logger redacts it unless told not to). */
function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

class RouterCore {
  readonly sessions = new Set<RouterSession>();
  readonly warnings: WarnLimiter;
  closing = false;
  /** Set by close(): called once no session is left. */
  onDrained: (() => void) | undefined;

  constructor(
    readonly log: Logger,
    readonly route: RouteFunction,
    readonly allow: AllowList,
    readonly maxConnections: number,
    readonly sessionDeadlineMs: number,
  ) {
    this.warnings = new WarnLimiter(log);
  }

  accept(socket: Socket): void {
    try {
      if (this.closing) return refuse(socket);
      const address = socket.remoteAddress;
      // Before anything is read: a refused peer never gets a byte parsed.
      if (!this.allow.allows(address)) {
        refuse(socket);
        this.warnings.warn({ address: address ?? 'unknown' }, 'FastAGI connection refused: address not in allow-list');
        return;
      }
      if (this.sessions.size >= this.maxConnections && !this.evictOne()) {
        refuse(socket);
        this.warnings.warn({ address, maxConnections: this.maxConnections }, 'FastAGI connection refused: at maxConnections');
        return;
      }
      this.sessions.add(new RouterSession(this, socket));
    } catch (e) {
      this.log.error({ err: e }, 'FastAGI connection setup failed');
      refuse(socket);
    }
  }

  /** A session stops counting as soon as it is destroyed or its socket closed, whichever is first. */
  release(session: RouterSession): void {
    if (this.sessions.delete(session) && this.sessions.size === 0 && this.onDrained !== undefined) this.onDrained();
  }

  /**
   * At capacity, the oldest session that is waiting on its peer (no complete
   * environment yet, or an unanswered MSet) gives way: Asterisk sends its
   * environment and replies within milliseconds, so such a session is a slow
   * or idle client, and it must not keep a real call out. Sessions inside
   * `route` are never evicted. False when none qualifies.
   */
  private evictOne(): boolean {
    for (const session of this.sessions) {
      if (!session.evictable) continue;
      this.warnings.warn({ maxConnections: this.maxConnections }, 'FastAGI at maxConnections: oldest idle session evicted');
      session.abort('evicted');
      return true;
    }
    return false;
  }
}

function refuse(socket: Socket): void {
  socket.on('error', ignoreError);
  socket.destroy();
}

// ---------------------------------------------------------------------------
// Start and stop

function positiveInteger(name: string, value: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || value <= 0 || value > max) throw new RangeError(`${name} must be an integer from 1 to ${max}, got ${value}`);
  return value;
}

/**
 * Bind with ding-dong's server. Two covers: the port goes in as a string
 * because ding-dong's `portIn || settings.port` turns 0 into 3000; and its own
 * 'connection' listener is removed, because it wraps every socket in a
 * Context whose constructor alone costs more CPU than a whole bare session
 * (readable-stream wrap + a closure per socket method), whose error re-emit
 * crashes the process when unheard, and whose parser has defects 1-4.
 */
function listen(host: string, port: number, onConnection: (socket: Socket) => void): Promise<Server> {
  const server = dingDong(ignoreError).start(String(port), host);
  server.removeAllListeners('connection');
  server.on('connection', onConnection);
  return new Promise<Server>((resolve, reject) => {
    const failed = (error: Error): void => {
      server.removeListener('listening', listening);
      reject(error);
    };
    const listening = (): void => {
      server.removeListener('error', failed);
      resolve(server);
    };
    server.once('error', failed);
    server.once('listening', listening);
  });
}

export async function startRouter(options: RouterOptions): Promise<Router> {
  if (typeof options.route !== 'function') throw new TypeError('startRouter: route must be a function');
  const host = options.host ?? ROUTER_DEFAULTS.host;
  if (typeof host !== 'string' || host.length === 0) throw new TypeError('startRouter: host must be a non-empty address');
  const port = options.port ?? ROUTER_DEFAULTS.port;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`startRouter: bad port ${port}`);
  const maxConnections = positiveInteger('maxConnections', options.maxConnections ?? ROUTER_DEFAULTS.maxConnections);
  const deadlineMs = positiveInteger('sessionDeadlineMs', options.sessionDeadlineMs ?? ROUTER_DEFAULTS.sessionDeadlineMs, TIMER_MAX_MS);
  const allow = new AllowList(options.allow ?? DEFAULT_ALLOW);
  const log = (options.logger ?? createLogger()).child({ component: 'agi' });

  const core = new RouterCore(log, options.route, allow, maxConnections, deadlineMs);
  const server = await listen(host, port, (socket) => core.accept(socket));
  // After bind: accept errors (EMFILE under a flood) must not crash the process.
  server.on('error', (error: NodeJS.ErrnoException) => {
    core.warnings.warn({ code: error.code }, 'FastAGI listener error');
  });
  const bound = server.address() as AddressInfo;
  const address = Object.freeze({ host: bound.address, port: bound.port });
  log.info({ host: address.host, port: address.port, allow: allow.entries, maxConnections, sessionDeadlineMs: deadlineMs }, 'FastAGI router listening');

  let closed: Promise<void> | undefined;
  return {
    address: () => address,
    connections: () => core.sessions.size,
    close(drainMs = deadlineMs): Promise<void> {
      if (closed !== undefined) return closed;
      if (!(drainMs >= 0 && drainMs <= TIMER_MAX_MS)) return Promise.reject(new RangeError(`drainMs must be from 0 to ${TIMER_MAX_MS}, got ${drainMs}`));
      core.closing = true;
      closed = new Promise<void>((resolve) => {
        let drainTimer: ReturnType<typeof setTimeout> | undefined;
        let listenerClosed = false;
        const settle = (): void => {
          if (!listenerClosed || core.sessions.size > 0) return;
          core.onDrained = undefined;
          if (drainTimer !== undefined) clearTimeout(drainTimer);
          log.info('FastAGI router closed');
          resolve();
        };
        core.onDrained = settle;
        // Node reports the listener closed once its own connection count is zero;
        // our sessions are released on their sockets' close events, which may come later.
        server.close(() => {
          listenerClosed = true;
          settle();
        });
        if (core.sessions.size > 0) {
          drainTimer = setTimeout(() => {
            for (const session of [...core.sessions]) session.abort('shutdown');
          }, drainMs);
        }
      });
      return closed;
    },
  };
}
