/**
 * The AMI client `vnum serve` keeps: logged in for as long as it runs, with
 * the event classes it asks for. It connects through ./manager.ts (the one
 * module on asterisk-manager, with the library's defects covered), logs in,
 * asks CoreSettings for Asterisk's version, pings so that a connection whose
 * peer vanished is noticed, and reconnects with exponential back-off and
 * jitter, reset by a successful login. An action asked for while not logged
 * in is refused at once (AMI_NOT_CONNECTED), never queued for a later
 * connection.
 */
import { EventEmitter } from 'node:events';
import type { ManagerInstance } from 'asterisk-manager';
import type { Logger } from 'pino';
import { actionIdSource, checkedAction, type AmiActionHeaders } from './action.js';
import { AmiError } from './errors.js';
import { AmiConnection, describeError, type AmiMessage } from './manager.js';
import { isRepresentableTime } from '../time.js';

export type { AmiMessage };

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

interface Connection {
  readonly ami: AmiConnection;
  loggedIn: boolean;
  pingTimer?: ReturnType<typeof setInterval>;
}

export interface AmiClientEvents {
  event: [AmiEvent];
  login: [{ asteriskVersion: string | null }];
  disconnect: [AmiError];
}

export class AmiClient extends EventEmitter<AmiClientEvents> {
  private readonly options: Required<Omit<AmiClientOptions, 'createManager' | 'random' | 'now'>>;
  private readonly createManager: (() => ManagerInstance) | undefined;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly nextId = actionIdSource();
  private readonly wanted: ReadonlySet<string>;
  private readonly log: Logger;
  private conn: Connection | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private current: AmiStatus;
  private warnedNoTimestamp = false;

  constructor(settings: AmiClientOptions) {
    super();
    this.options = {
      actionTimeoutMs: AMI_DEFAULTS.actionTimeoutMs,
      connectTimeoutMs: AMI_DEFAULTS.connectTimeoutMs,
      reconnectInitialMs: AMI_DEFAULTS.reconnectInitialMs,
      reconnectMaxMs: AMI_DEFAULTS.reconnectMaxMs,
      pingIntervalMs: AMI_DEFAULTS.pingIntervalMs,
      ...settings,
    };
    this.createManager = settings.createManager;
    this.random = settings.random ?? Math.random;
    this.now = settings.now ?? Date.now;
    this.wanted = new Set(settings.events);
    this.log = settings.logger.child({ component: 'ami' });
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
        await conn.ami.send('Logoff', {}, 1_000).catch(() => undefined);
      }
      this.drop(conn, new AmiError('AMI_STOPPED', 'AMI client stopped'));
    }
  }

  /** One action; resolves with its response, rejects with an AmiError. */
  async action(name: string, headers: AmiActionHeaders = {}, timeoutMs?: number): Promise<AmiMessage> {
    return this.loggedInConnection(name).send(name, headers, timeoutMs ?? this.options.actionTimeoutMs);
  }

  /** An action answered by an event list (e.g. CoreShowChannels): the list's events. */
  async actionList(name: string, headers: AmiActionHeaders = {}, timeoutMs?: number): Promise<AmiMessage[]> {
    const result = await this.loggedInConnection(name).send(name, headers, timeoutMs ?? this.options.actionTimeoutMs, true);
    return result.list ?? [];
  }

  // -------------------------------------------------------------------------

  private loggedInConnection(name: string): AmiConnection {
    const conn = this.conn;
    if (!conn || !conn.loggedIn) throw new AmiError('AMI_NOT_CONNECTED', `AMI not logged in (${this.current.state}): ${name} not sent`);
    return conn.ami;
  }

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
    this.current.nextAttemptAt = null;
    const conn: Connection = {
      ami: new AmiConnection({
        host: this.options.host,
        port: this.options.port,
        connectTimeoutMs: this.options.connectTimeoutMs,
        nextActionId: this.nextId,
        createManager: this.createManager,
        onEvent: (message) => this.onEvent(conn, message),
        onEnd: (reason) => this.drop(conn, reason),
      }),
      loggedIn: false,
    };
    this.conn = conn;
    void conn.ami.connected.then(() => this.login(conn));
  }

  private async login(conn: Connection): Promise<void> {
    if (conn !== this.conn) return;
    try {
      try {
        await conn.ami.login(this.loginHeaders(), this.options.actionTimeoutMs);
      } catch (error) {
        if (error instanceof AmiError && error.code === 'AMI_ACTION_FAILED') {
          throw new AmiError('AMI_LOGIN_FAILED', `AMI login as "${this.options.username}" refused: ${error.message.replace(/^login: /, '')}`);
        }
        throw error;
      }
      if (conn !== this.conn) return;
      conn.loggedIn = true;
      this.current.failures = 0;
      this.current.loggedInAt = this.now();
      this.current.lastError = null;
      this.setState('logged-in');
      let version: string | null = null;
      try {
        const settings = await conn.ami.send('CoreSettings', {}, this.options.actionTimeoutMs);
        version = settings.fields.asteriskversion ?? null;
      } catch (error) {
        // write=reporting missing: everything else works.
        this.log.warn({ err: describeError(error) }, 'AMI CoreSettings failed: Asterisk version unknown (the AMI user needs write=reporting)');
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
      const failure = error instanceof AmiError ? error : new AmiError('AMI_SOCKET', describeError(error), { cause: error });
      if (failure.code === 'AMI_LOGIN_FAILED') this.log.error({ user: this.options.username }, failure.message);
      this.drop(conn, failure);
    }
  }

  private ping(conn: Connection): void {
    if (conn !== this.conn || !conn.loggedIn) return;
    conn.ami.send('Ping', {}, this.options.actionTimeoutMs).catch((error: AmiError) => {
      if (error.code === 'AMI_TIMEOUT') {
        this.drop(conn, new AmiError('AMI_TIMEOUT', `no answer to Ping within ${this.options.actionTimeoutMs} ms: connection abandoned`));
      }
    });
  }

  private onEvent(conn: Connection, message: AmiMessage): void {
    const fields = message.fields;
    const name = fields.event ?? '';
    if (conn !== this.conn || !conn.loggedIn || !this.wanted.has(name)) return;
    const stamp = Number(fields.timestamp);
    // A Timestamp outside what a date can hold would make the call log unprintable.
    const timestamped = fields.timestamp !== undefined && stamp > 0 && isRepresentableTime(stamp * 1000);
    if (!timestamped && !this.warnedNoTimestamp) {
      this.warnedNoTimestamp = true;
      this.log.warn('AMI events carry no Timestamp: call times are when vnum read them; set timestampevents = yes in manager.conf');
    }
    this.safeEmit('event', { name, fields, at: timestamped ? Math.round(stamp * 1000) : this.now(), timestamped });
  }

  /** The one place a connection ends: its actions fail, and a new attempt is scheduled. */
  private drop(conn: Connection, reason: AmiError): void {
    if (conn !== this.conn) return;
    this.conn = null;
    clearInterval(conn.pingTimer);
    const wasLoggedIn = conn.loggedIn;
    conn.loggedIn = false;
    conn.ami.close(reason);
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
