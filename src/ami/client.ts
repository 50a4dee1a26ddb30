/**
 * An AMI (Asterisk Manager Interface) client on asterisk-manager 0.2.0, with
 * our own code wherever the library is unsafe (../shared/notes/dependencies.md):
 *
 * 1. Its login() sends `Event: off`; Asterisk reads only `Events`, so the
 *    session would get every event its user may read. We log in with our own
 *    Login action carrying `Events: <classes>`. The library's login() is then
 *    called once only because the library holds back every other action
 *    until it has seen its own login succeed; Asterisk answers that second
 *    Login "Already authenticated" without reading it (its empty secret and
 *    its `Event: off` change nothing), which the e2e suite checks on 22.10.
 * 2. No CR/LF check: every action goes through `checkedAction()` (./action.ts),
 *    which refuses CR, LF and NUL in any header name or value.
 * 3. `on('error', () => {})` swallows errors: every connection gets our own
 *    listener, which logs the error, keeps it in `status().lastError`, and
 *    fails the connection's pending actions with it as the cause.
 * 4. ActionID is Date.now(): ours come from `actionIdSource()`, unique per
 *    process and across clients.
 * 5. No timeout, no rejection on disconnect, actions queued before login stuck
 *    forever: every action here has a timer; a dropped connection rejects
 *    whatever was in flight at once; an action asked for while not logged in
 *    is refused at once (AMI_NOT_CONNECTED), never queued to fire minutes
 *    later on a new connection.
 * 6. Reconnect only with keepConnected(), 10 s more each time up to 60 s (and
 *    a console.log per try): not used. We reconnect ourselves with exponential
 *    back-off and jitter, reset by a successful login.
 *
 * Also: one library instance per connection attempt. Its parser keeps a
 * partial line and queued actions in the instance, so a connection cut in the
 * middle of a message would otherwise glue that fragment to the next
 * connection's first message. A Ping every `pingIntervalMs` finds a
 * connection whose peer vanished without closing it (the library offers no
 * way to destroy its socket, so such a connection is abandoned, and Asterisk
 * closes it). Events and responses are never logged: they carry real numbers.
 */
import { EventEmitter } from 'node:events';
import Manager, { type ManagerInstance, type ManagerMessage } from 'asterisk-manager';
import type { Logger } from 'pino';
import { actionIdSource, AmiHeaderError, checkedAction, type AmiActionHeaders } from './action.js';
import { isRepresentableTime } from '../time.js';

export type AmiErrorCode =
  | 'AMI_TIMEOUT'
  | 'AMI_DISCONNECTED'
  | 'AMI_NOT_CONNECTED'
  | 'AMI_ACTION_FAILED'
  | 'AMI_LOGIN_FAILED'
  | 'AMI_BAD_HEADER'
  | 'AMI_SOCKET'
  | 'AMI_STOPPED';

export class AmiError extends Error {
  readonly code: AmiErrorCode;
  constructor(code: AmiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AmiError';
    this.code = code;
  }
}

/** A message from Asterisk: header names lower-cased, one value each. */
export interface AmiMessage {
  readonly fields: Readonly<Record<string, string>>;
}

export interface AmiEvent extends AmiMessage {
  /** The `Event` header as Asterisk wrote it, e.g. `DialBegin`. */
  readonly name: string;
  /** Asterisk's `Timestamp` (timestampevents = yes), in ms; else when it was read. */
  readonly at: number;
  /** True when `at` is Asterisk's own timestamp. */
  readonly timestamped: boolean;
}

export type AmiState = 'stopped' | 'connecting' | 'logged-in' | 'waiting';

export interface AmiStatus {
  state: AmiState;
  /** When the current state began (ms). */
  since: number;
  loggedInAt: number | null;
  asteriskVersion: string | null;
  /** The last error seen, for operators (never holds a secret or an event). */
  lastError: string | null;
  /** Connection attempts since the last successful login. */
  failures: number;
  nextAttemptAt: number | null;
}

export interface AmiClientOptions {
  host: string;
  port: number;
  username: string;
  secret: string;
  /** Event classes for the Login `Events` header (e.g. ['call']); empty: `Events: off`. */
  eventClasses: readonly string[];
  /** Events passed on to listeners, by name; others are dropped unread. */
  events: readonly string[];
  actionTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Back-off before reconnecting: initial, doubled per failure, capped. */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  /** Ping this often while logged in (0: never); a Ping that times out drops the connection. */
  pingIntervalMs?: number;
  logger: Logger;
  /** For tests: how to make the library instance (one per connection attempt). */
  createManager?: () => ManagerInstance;
  /** For tests: jitter source in [0, 1). */
  random?: () => number;
  now?: () => number;
}

export const AMI_DEFAULTS = Object.freeze({
  port: 5038,
  actionTimeoutMs: 5_000,
  connectTimeoutMs: 5_000,
  reconnectInitialMs: 500,
  reconnectMaxMs: 30_000,
  pingIntervalMs: 10_000,
});

/** A response, and for an event-list action the list's events. */
type AmiResponse = AmiMessage & { list?: AmiMessage[] };

interface Pending {
  name: string;
  resolve: (message: AmiResponse) => void;
  reject: (error: AmiError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** For event lists: events with our ActionID, until `EventList: Complete`. */
  list?: AmiMessage[];
}

interface Connection {
  readonly manager: ManagerInstance;
  readonly pending: Map<string, Pending>;
  loggedIn: boolean;
  connectTimer?: ReturnType<typeof setTimeout>;
  pingTimer?: ReturnType<typeof setInterval>;
}

/** One value per header: the first of repeated ones; variables as `name=value`. */
function flatten(message: ManagerMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(message)) {
    if (typeof value === 'string') out[key] = value;
    else if (Array.isArray(value)) out[key] = String(value[0] ?? '');
    else if (value && typeof value === 'object') {
      for (const [name, v] of Object.entries(value)) out[`${key}:${name}`] = String(v);
    }
  }
  return out;
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

export interface AmiClientEvents {
  event: [AmiEvent];
  login: [{ asteriskVersion: string | null }];
  disconnect: [AmiError];
}

export class AmiClient extends EventEmitter<AmiClientEvents> {
  private readonly options: Required<Omit<AmiClientOptions, 'createManager' | 'random' | 'now'>>;
  private readonly createManager: () => ManagerInstance;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly nextId = actionIdSource();
  private readonly wanted: ReadonlySet<string>;
  private readonly log: Logger;
  private conn: Connection | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private current: AmiStatus;
  private warnedNoTimestamp = false;

  constructor(options: AmiClientOptions) {
    super();
    this.options = {
      actionTimeoutMs: AMI_DEFAULTS.actionTimeoutMs,
      connectTimeoutMs: AMI_DEFAULTS.connectTimeoutMs,
      reconnectInitialMs: AMI_DEFAULTS.reconnectInitialMs,
      reconnectMaxMs: AMI_DEFAULTS.reconnectMaxMs,
      pingIntervalMs: AMI_DEFAULTS.pingIntervalMs,
      ...options,
    };
    // The library's constructor without a port neither connects nor logs in.
    this.createManager = options.createManager ?? (() => Manager());
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.wanted = new Set(options.events);
    this.log = options.logger.child({ component: 'ami' });
    this.current = {
      state: 'stopped',
      since: this.now(),
      loggedInAt: null,
      asteriskVersion: null,
      lastError: null,
      failures: 0,
      nextAttemptAt: null,
    };
    // Checked once here, so a bad user name or class list fails at start, not at every login.
    checkedAction('login', this.loginHeaders(), 'check');
  }

  status(): AmiStatus {
    return { ...this.current };
  }

  get loggedIn(): boolean {
    return this.current.state === 'logged-in';
  }

  /** Connect, log in, and stay connected until stop(). */
  start(): void {
    if (this.current.state !== 'stopped') return;
    this.setState('connecting');
    this.connect();
  }

  /** Log off (briefly), drop the connection, stop reconnecting. Pending actions are rejected. */
  async stop(): Promise<void> {
    if (this.current.state === 'stopped') return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const conn = this.conn;
    this.setState('stopped');
    this.current.nextAttemptAt = null;
    if (conn) {
      if (conn.loggedIn) {
        await this.send(conn, 'Logoff', {}, 1_000).catch(() => undefined);
      }
      this.drop(conn, new AmiError('AMI_STOPPED', 'AMI client stopped'));
    }
  }

  /** One action; resolves with its response, rejects with an AmiError. */
  async action(name: string, headers: AmiActionHeaders = {}, timeoutMs?: number): Promise<AmiMessage> {
    const conn = this.conn;
    if (!conn || !conn.loggedIn) throw new AmiError('AMI_NOT_CONNECTED', `AMI not logged in (${this.current.state}): ${name} not sent`);
    return this.send(conn, name, headers, timeoutMs ?? this.options.actionTimeoutMs);
  }

  /** An action answered by an event list (e.g. CoreShowChannels): the list's events. */
  async actionList(name: string, headers: AmiActionHeaders = {}, timeoutMs?: number): Promise<AmiMessage[]> {
    const conn = this.conn;
    if (!conn || !conn.loggedIn) throw new AmiError('AMI_NOT_CONNECTED', `AMI not logged in (${this.current.state}): ${name} not sent`);
    const result = await this.send(conn, name, headers, timeoutMs ?? this.options.actionTimeoutMs, true);
    return result.list ?? [];
  }

  // -------------------------------------------------------------------------

  private loginHeaders(): Record<string, string> {
    return {
      Username: this.options.username,
      Secret: this.options.secret,
      Events: this.options.eventClasses.length > 0 ? this.options.eventClasses.join(',') : 'off',
    };
  }

  private setState(state: AmiState): void {
    if (this.current.state !== state) {
      this.current.state = state;
      this.current.since = this.now();
    }
  }

  private connect(): void {
    const manager = this.createManager();
    const conn: Connection = { manager, pending: new Map(), loggedIn: false };
    this.conn = conn;
    this.current.nextAttemptAt = null;
    // Ours, beside the library's empty one: errors are reported, not swallowed.
    manager.on('error', (error: unknown) => this.onSocketError(conn, error));
    manager.on('close', () => this.drop(conn, new AmiError('AMI_DISCONNECTED', 'connection closed by Asterisk')));
    manager.on('end', () => this.drop(conn, new AmiError('AMI_DISCONNECTED', 'connection ended by Asterisk')));
    manager.on('managerevent', (message: ManagerMessage) => this.onEvent(conn, message));
    conn.connectTimer = setTimeout(() => {
      this.drop(conn, new AmiError('AMI_TIMEOUT', `no AMI connection to ${this.options.host}:${this.options.port} within ${this.options.connectTimeoutMs} ms`));
    }, this.options.connectTimeoutMs);
    try {
      manager.connect(this.options.port, this.options.host, () => {
        clearTimeout(conn.connectTimer);
        void this.login(conn);
      });
    } catch (error) {
      this.drop(conn, new AmiError('AMI_SOCKET', describe(error), { cause: error }));
    }
  }

  private async login(conn: Connection): Promise<void> {
    try {
      try {
        await this.send(conn, 'login', this.loginHeaders(), this.options.actionTimeoutMs);
      } catch (error) {
        if (error instanceof AmiError && error.code === 'AMI_ACTION_FAILED') {
          throw new AmiError('AMI_LOGIN_FAILED', `AMI login as "${this.options.username}" refused: ${error.message.replace(/^login: /, '')}`);
        }
        throw error;
      }
      await this.openLibraryGate(conn);
      if (conn !== this.conn) return;
      conn.loggedIn = true;
      this.current.failures = 0;
      this.current.loggedInAt = this.now();
      this.current.lastError = null;
      this.setState('logged-in');
      let version: string | null = null;
      try {
        const settings = await this.send(conn, 'CoreSettings', {}, this.options.actionTimeoutMs);
        version = settings.fields.asteriskversion ?? null;
      } catch (error) {
        // write=reporting missing: everything else works.
        this.log.warn({ err: describe(error) }, 'AMI CoreSettings failed: Asterisk version unknown (the AMI user needs write=reporting)');
      }
      if (conn !== this.conn) return;
      this.current.asteriskVersion = version;
      if (this.options.pingIntervalMs > 0) {
        conn.pingTimer = setInterval(() => this.ping(conn), this.options.pingIntervalMs);
        conn.pingTimer.unref?.();
      }
      this.log.info(
        { host: this.options.host, port: this.options.port, user: this.options.username, asteriskVersion: version, events: this.options.eventClasses.join(',') || 'off' },
        'AMI logged in',
      );
      this.safeEmit('login', { asteriskVersion: version });
    } catch (error) {
      const failure = error instanceof AmiError ? error : new AmiError('AMI_SOCKET', describe(error), { cause: error });
      if (failure.code === 'AMI_LOGIN_FAILED') this.log.error({ user: this.options.username }, failure.message);
      this.drop(conn, failure);
    }
  }

  /** The library's login(), only so that it stops holding our actions back (see defect 1 above). */
  private openLibraryGate(conn: Connection): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new AmiError('AMI_TIMEOUT', `no answer to the second Login within ${this.options.actionTimeoutMs} ms`)),
        this.options.actionTimeoutMs,
      );
      try {
        conn.manager.login((error) => {
          clearTimeout(timer);
          if (error) reject(new AmiError('AMI_LOGIN_FAILED', `second Login refused: ${String(error.message ?? 'error')}`));
          else resolve();
        });
      } catch (error) {
        clearTimeout(timer);
        reject(new AmiError('AMI_SOCKET', describe(error), { cause: error }));
      }
    });
  }

  private ping(conn: Connection): void {
    if (conn !== this.conn || !conn.loggedIn) return;
    this.send(conn, 'Ping', {}, this.options.actionTimeoutMs).catch((error: AmiError) => {
      if (error.code === 'AMI_TIMEOUT') {
        this.drop(conn, new AmiError('AMI_TIMEOUT', `no answer to Ping within ${this.options.actionTimeoutMs} ms: connection abandoned`));
      }
    });
  }

  private send(conn: Connection, name: string, headers: AmiActionHeaders, timeoutMs: number, list = false): Promise<AmiResponse> {
    return new Promise<AmiResponse>((resolve, reject) => {
      if (conn !== this.conn) {
        reject(new AmiError('AMI_DISCONNECTED', `${name}: connection gone`));
        return;
      }
      const id = this.nextId();
      let action: Record<string, string>;
      try {
        action = checkedAction(name, headers, id);
      } catch (error) {
        reject(new AmiError('AMI_BAD_HEADER', `${name} refused: ${(error as AmiHeaderError).message}`, { cause: error }));
        return;
      }
      // The library writes to a socket that may be gone, prints to stdout and queues the action: never let it.
      if (!conn.manager.isConnected()) {
        reject(new AmiError('AMI_NOT_CONNECTED', `${name}: not connected`));
        return;
      }
      const pending: Pending = {
        name,
        resolve,
        reject,
        timer: setTimeout(() => {
          if (conn.pending.get(id) !== pending) return;
          conn.pending.delete(id);
          conn.manager.removeAllListeners(id);
          reject(new AmiError('AMI_TIMEOUT', `${name}: no answer within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      if (list) pending.list = [];
      conn.pending.set(id, pending);
      try {
        conn.manager.action(action, (error, response) => this.onResponse(conn, id, error, response));
      } catch (error) {
        conn.pending.delete(id);
        clearTimeout(pending.timer);
        reject(new AmiError('AMI_SOCKET', `${name}: ${describe(error)}`, { cause: error }));
      }
    });
  }

  private onResponse(conn: Connection, id: string, error: ManagerMessage | undefined, response: ManagerMessage | undefined): void {
    const pending = conn.pending.get(id);
    if (!pending) return; // timed out or rejected already
    if (error) {
      conn.pending.delete(id);
      clearTimeout(pending.timer);
      const message = typeof error.message === 'string' ? error.message : 'error';
      pending.reject(new AmiError('AMI_ACTION_FAILED', `${pending.name}: ${message}`));
      return;
    }
    const message: AmiMessage = { fields: flatten(response ?? {}) };
    // An event list's events follow this response; its last one settles the action.
    if (pending.list) return;
    conn.pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(message);
  }

  private onEvent(conn: Connection, raw: ManagerMessage): void {
    if (conn !== this.conn) return;
    const fields = flatten(raw);
    const actionId = fields.actionid;
    if (actionId !== undefined) {
      const pending = conn.pending.get(actionId);
      if (pending?.list) {
        if ((fields.eventlist ?? '').toLowerCase() === 'complete') {
          conn.pending.delete(actionId);
          clearTimeout(pending.timer);
          pending.resolve({ fields, list: pending.list });
        } else {
          pending.list.push({ fields });
        }
        return;
      }
    }
    const name = fields.event ?? '';
    if (!conn.loggedIn || !this.wanted.has(name)) return;
    const stamp = Number(fields.timestamp);
    // A Timestamp outside what a date can hold would make the call log unprintable.
    const timestamped = fields.timestamp !== undefined && stamp > 0 && isRepresentableTime(stamp * 1000);
    if (!timestamped && !this.warnedNoTimestamp) {
      this.warnedNoTimestamp = true;
      this.log.warn('AMI events carry no Timestamp: call times are when vnum read them; set timestampevents = yes in manager.conf');
    }
    this.safeEmit('event', { name, fields, at: timestamped ? Math.round(stamp * 1000) : this.now(), timestamped });
  }

  /** Reported by drop(): one warning per failed attempt, with the error as its reason. */
  private onSocketError(conn: Connection, error: unknown): void {
    if (conn === this.conn) this.drop(conn, new AmiError('AMI_SOCKET', describe(error), { cause: error }));
  }

  /** The one place a connection ends: pending actions fail, and a new attempt is scheduled. */
  private drop(conn: Connection, reason: AmiError): void {
    if (conn !== this.conn) return;
    this.conn = null;
    clearTimeout(conn.connectTimer);
    clearInterval(conn.pingTimer);
    const wasLoggedIn = conn.loggedIn;
    conn.loggedIn = false;
    for (const [id, pending] of conn.pending) {
      clearTimeout(pending.timer);
      pending.reject(new AmiError('AMI_DISCONNECTED', `${pending.name}: ${reason.message}`, { cause: reason }));
      conn.manager.removeAllListeners(id);
    }
    conn.pending.clear();
    try {
      conn.manager.disconnect();
    } catch {
      // the socket is already gone
    }
    if (this.current.state === 'stopped') return;
    this.current.lastError = reason.message;
    this.current.failures++;
    const delay = this.backoff(this.current.failures);
    this.current.nextAttemptAt = this.now() + delay;
    this.setState('waiting');
    this.log.warn(
      { reason: reason.message, code: reason.code, host: this.options.host, port: this.options.port, retryInMs: delay, failures: this.current.failures },
      wasLoggedIn ? 'AMI connection lost' : 'AMI connection failed',
    );
    this.safeEmit('disconnect', reason);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.current.state !== 'waiting') return;
      this.setState('connecting');
      this.connect();
    }, delay);
  }

  /** initial × 2^(n-1), capped, ±20 % so that many routers do not reconnect in step. */
  private backoff(failures: number): number {
    const base = Math.min(this.options.reconnectMaxMs, this.options.reconnectInitialMs * 2 ** Math.min(failures - 1, 30));
    return Math.round(base * (0.8 + 0.4 * this.random()));
  }

  /** A listener that throws must not unwind into the library's socket handler (that would crash the process). */
  private safeEmit<K extends keyof AmiClientEvents>(name: K, ...args: AmiClientEvents[K]): void {
    try {
      (this.emit as (n: K, ...a: AmiClientEvents[K]) => boolean)(name, ...args);
    } catch (error) {
      this.log.error({ err: error }, `AMI ${name} listener failed`);
    }
  }
}
