/**
 * One AMI connection on asterisk-manager 0.2.0: the only module that imports
 * the library, and the cover for each of its defects
 * (test/unit/ami-client.test.ts shows each on the library, then on us):
 * 1. its login() sends `Event: off`, which Asterisk ignores: login() sends our
 *    Login with `Events: <classes>`, then the library's own only so that it
 *    passes our actions on (Asterisk answers it "Already authenticated");
 * 2. no CR/LF check: every action goes through checkedAction() (./action.ts);
 * 3. errors are swallowed: ours end the connection with the error as reason;
 * 4. ActionID is Date.now(): ours come from the owner's actionIdSource();
 * 5. no timeout, nothing rejected on disconnect: each action has a timer,
 *    close() rejects what is in flight, nothing is queued while disconnected;
 * 6. its reconnect is not used: the client reconnects (./client.ts).
 * One library instance per connection: its parser keeps a partial line in
 * the instance, which would glue a cut message to the next connection's first.
 * Events and responses are never logged here: they carry real numbers.
 */
import Manager, { type ManagerInstance, type ManagerMessage } from 'asterisk-manager';
import { checkedAction, type AmiActionHeaders } from './action.js';
import { AmiError, AmiHeaderError } from './errors.js';

/** A message from Asterisk: header names lower-cased, one value each. */
export interface AmiMessage {
  readonly fields: Readonly<Record<string, string>>;
}

/** A response, and for an event-list action the list's events. */
export type AmiResponse = AmiMessage & { list?: AmiMessage[] };

export interface AmiConnectionOptions {
  host: string;
  port: number;
  connectTimeoutMs: number;
  nextActionId: () => string;
  /** An event that belongs to no action in flight. */
  onEvent: (message: AmiMessage) => void;
  /** The connection ended by itself (Asterisk closed it, a socket error, no connection in time). Not called after close(). */
  onEnd: (reason: AmiError) => void;
  /** For tests: how to make the library instance. */
  createManager?: (() => ManagerInstance) | undefined;
}

interface Pending {
  name: string;
  resolve: (message: AmiResponse) => void;
  reject: (error: AmiError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** For event lists: events with our ActionID, until `EventList: Complete`. */
  list?: AmiMessage[];
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

/** An error's text for an operator: its system code first when it has one. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

export class AmiConnection {
  /** Resolves once the TCP connection is up (never rejects: a failure ends the connection instead). */
  readonly connected: Promise<void>;
  private readonly manager: ManagerInstance;
  private readonly pending = new Map<string, Pending>();
  private readonly connectTimer: ReturnType<typeof setTimeout>;
  private ended = false;

  constructor(private readonly options: AmiConnectionOptions) {
    // The library's constructor without a port neither connects nor logs in.
    this.manager = (options.createManager ?? (() => Manager()))();
    const manager = this.manager;
    // Ours, beside the library's empty one: errors end the connection, they are not swallowed.
    manager.on('error', (error: unknown) => this.end(new AmiError('AMI_SOCKET', describeError(error), { cause: error })));
    manager.on('close', () => this.end(new AmiError('AMI_DISCONNECTED', 'connection closed by Asterisk')));
    manager.on('end', () => this.end(new AmiError('AMI_DISCONNECTED', 'connection ended by Asterisk')));
    manager.on('managerevent', (message: ManagerMessage) => this.onEvent(message));
    this.connectTimer = setTimeout(() => {
      this.end(new AmiError('AMI_TIMEOUT', `no AMI connection to ${options.host}:${options.port} within ${options.connectTimeoutMs} ms`));
    }, options.connectTimeoutMs);
    this.connected = new Promise<void>((resolve) => {
      try {
        manager.connect(options.port, options.host, () => {
          clearTimeout(this.connectTimer);
          resolve();
        });
      } catch (error) {
        queueMicrotask(() => this.end(new AmiError('AMI_SOCKET', describeError(error), { cause: error })));
      }
    });
  }

  /** Our Login (Username, Secret, Events), then the library's own, which only lets it pass our actions on. */
  async login(headers: AmiActionHeaders, timeoutMs: number): Promise<void> {
    await this.send('login', headers, timeoutMs);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new AmiError('AMI_TIMEOUT', `no answer to the second Login within ${timeoutMs} ms`)), timeoutMs);
      try {
        this.manager.login((error) => {
          clearTimeout(timer);
          if (error) reject(new AmiError('AMI_LOGIN_FAILED', `second Login refused: ${String(error.message ?? 'error')}`));
          else resolve();
        });
      } catch (error) {
        clearTimeout(timer);
        reject(new AmiError('AMI_SOCKET', describeError(error), { cause: error }));
      }
    });
  }

  /** One action; resolves with its response (and with `list`, the events of an event list), rejects with an AmiError. */
  send(name: string, headers: AmiActionHeaders, timeoutMs: number, list = false): Promise<AmiResponse> {
    return new Promise<AmiResponse>((resolve, reject) => {
      if (this.ended) {
        reject(new AmiError('AMI_DISCONNECTED', `${name}: connection gone`));
        return;
      }
      const id = this.options.nextActionId();
      let action: Record<string, string>;
      try {
        action = checkedAction(name, headers, id);
      } catch (error) {
        reject(new AmiHeaderError(`${name} refused: ${(error as Error).message}`));
        return;
      }
      // The library writes to a socket that may be gone, prints to stdout and queues the action: never let it.
      if (!this.manager.isConnected()) {
        reject(new AmiError('AMI_NOT_CONNECTED', `${name}: not connected`));
        return;
      }
      const pending: Pending = {
        name,
        resolve,
        reject,
        timer: setTimeout(() => {
          if (this.pending.get(id) !== pending) return;
          this.pending.delete(id);
          this.manager.removeAllListeners(id);
          reject(new AmiError('AMI_TIMEOUT', `${name}: no answer within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      if (list) pending.list = [];
      this.pending.set(id, pending);
      try {
        this.manager.action(action, (error, response) => this.onResponse(id, error, response));
      } catch (error) {
        this.pending.delete(id);
        clearTimeout(pending.timer);
        reject(new AmiError('AMI_SOCKET', `${name}: ${describeError(error)}`, { cause: error }));
      }
    });
  }

  /** End it: actions in flight are rejected with `reason` as their cause; onEnd is not called. */
  close(reason: AmiError): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.connectTimer);
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(new AmiError('AMI_DISCONNECTED', `${pending.name}: ${reason.message}`, { cause: reason }));
      this.manager.removeAllListeners(id);
    }
    this.pending.clear();
    try {
      this.manager.disconnect();
    } catch {
      // the socket is already gone
    }
  }

  private end(reason: AmiError): void {
    if (this.ended) return;
    this.close(reason);
    this.options.onEnd(reason);
  }

  private onResponse(id: string, error: ManagerMessage | undefined, response: ManagerMessage | undefined): void {
    const pending = this.pending.get(id);
    if (!pending) return; // timed out or rejected already
    if (error) {
      this.pending.delete(id);
      clearTimeout(pending.timer);
      const message = typeof error.message === 'string' ? error.message : 'error';
      pending.reject(new AmiError('AMI_ACTION_FAILED', `${pending.name}: ${message}`));
      return;
    }
    // An event list's events follow this response; its last one settles the action.
    if (pending.list) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve({ fields: flatten(response ?? {}) });
  }

  private onEvent(raw: ManagerMessage): void {
    if (this.ended) return;
    const fields = flatten(raw);
    const actionId = fields.actionid;
    if (actionId !== undefined) {
      const pending = this.pending.get(actionId);
      if (pending?.list) {
        if ((fields.eventlist ?? '').toLowerCase() === 'complete') {
          this.pending.delete(actionId);
          clearTimeout(pending.timer);
          pending.resolve({ fields, list: pending.list });
        } else {
          pending.list.push({ fields });
        }
        return;
      }
    }
    this.options.onEvent({ fields });
  }
}
