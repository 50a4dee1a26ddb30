import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { AgiError } from './errors.js';
import { HEALTH_PROBE_ANSWER, HEALTH_PROBE_SCRIPT } from './health-probe.js';
import { AgiWire, buildMSet, type AgiEnvironment, type AgiPeer, type AgiReply } from './wire.js';

/** What a handler answers: channel variables, set in this order by one `EXEC MSet`. */
export interface AgiAnswer {
  readonly variables: ReadonlyArray<readonly [name: string, value: string]>;
  /** Fields for the connection's debug line (what was decided, never a secret). */
  readonly log?: Readonly<Record<string, unknown>>;
}

/** Called once per connection with Asterisk's environment, verbatim (a missing caller ID is the literal `unknown`). */
export type AgiHandler = (environment: AgiEnvironment) => AgiAnswer | PromiseLike<AgiAnswer>;

/** An answer as written: its one command line. */
export interface PreparedAnswer {
  readonly command: string;
  readonly log: Readonly<Record<string, unknown>> | undefined;
}

export function prepareAnswer(answer: AgiAnswer): PreparedAnswer {
  return { command: buildMSet(answer.variables), log: answer.log };
}

/** What a connection needs from the server that accepted it. */
export interface ConnectionOwner {
  readonly log: Logger;
  readonly handler: AgiHandler;
  /** Written when the handler throws, rejects, or answers what cannot be written. */
  readonly fallback: PreparedAnswer;
  readonly deadlineMs: number;
  /** The connection no longer counts (destroyed, or its socket closed). */
  release(connection: Connection): void;
  /** Once per connection, when its socket is gone: how it ended. */
  ended(outcome: Outcome): void;
}

/**
 * environment: reading the environment (waiting on Asterisk); handling: inside
 * the handler (waiting on us); answering: MSet written, waiting for its reply;
 * done: waiting for the socket to close.
 */
type Stage = 'environment' | 'handling' | 'answering' | 'done';

export const OUTCOMES = ['answered', 'probe', 'deadline', 'protocol', 'peer-closed', 'evicted', 'shutdown', 'internal'] as const;
export type Outcome = (typeof OUTCOMES)[number];

const kConnection = Symbol('vnum.agi.connection');
type ConnectionSocket = Socket & { [kConnection]?: Connection };

// Listeners shared by every socket (`this` is the socket): nothing allocated per connection.
function onSocketData(this: ConnectionSocket, chunk: string): void {
  const connection = this[kConnection];
  if (connection === undefined) return;
  try {
    connection.wire.push(chunk);
  } catch (e) {
    connection.internalError(e);
  }
}
function onSocketError(this: ConnectionSocket, error: NodeJS.ErrnoException): void {
  const connection = this[kConnection];
  if (connection !== undefined && connection.socketError === undefined) connection.socketError = error.code ?? error.message;
}
function onSocketClose(this: ConnectionSocket): void {
  this[kConnection]?.finish();
}
function ignoreError(): void {}
function onDeadline(connection: Connection): void {
  connection.deadline();
}

/** A caller's own text, bounded for a log line (the logger redacts it unless told not to). */
function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

/**
 * One FastAGI connection, connect to close: the environment is read, handed
 * to the handler, its answer written as one `EXEC MSet`, Asterisk's reply
 * awaited, the socket ended. Asterisk waits forever on a connected FastAGI
 * server, so every connection has a hard deadline; anything that goes wrong
 * ends in a closed socket with nothing written, and the dialplan fails closed.
 */
export class Connection implements AgiPeer {
  readonly wire: AgiWire;
  private readonly timer: ReturnType<typeof setTimeout>;
  private readonly startedAt = performance.now();
  private stage: Stage = 'environment';
  private outcome: Outcome | undefined;
  private answerLog: Readonly<Record<string, unknown>> | undefined;
  private callerId = '';
  private extension = '';
  /** What an operator matches a log line to a call by: agi_uniqueid, agi_channel. */
  private uniqueId = '';
  private channel = '';
  socketError: string | undefined;

  constructor(
    private readonly owner: ConnectionOwner,
    private readonly socket: ConnectionSocket,
  ) {
    this.wire = new AgiWire(this);
    socket[kConnection] = this;
    socket.setEncoding('utf8');
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    this.timer = setTimeout(onDeadline, owner.deadlineMs, this);
  }

  /** Waiting on the peer rather than on the handler: a slow or idle client may make room for a new call. */
  get evictable(): boolean {
    return this.stage !== 'handling';
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
      this.owner.release(this);
      this.owner.log.warn({ address: this.socket.remoteAddress }, 'FastAGI environment lacks agi_callerid or agi_extension: connection dropped');
      this.socket.destroy();
      return;
    }
    this.stage = 'handling';
    this.callerId = env.get('agi_callerid') ?? '';
    this.extension = env.get('agi_extension') ?? '';
    this.uniqueId = env.get('agi_uniqueid') ?? '';
    this.channel = env.get('agi_channel') ?? '';
    let answered: AgiAnswer | PromiseLike<AgiAnswer>;
    const handler = this.owner.handler; // called bare: the handler's `this` is not our business
    try {
      answered = handler(env);
    } catch (e) {
      this.handlerFailed(e);
      return;
    }
    if (answered !== null && typeof answered === 'object' && typeof (answered as PromiseLike<unknown>).then === 'function') {
      // Promise.resolve also survives a thenable whose `then` throws.
      Promise.resolve(answered)
        .then(
          (value) => this.answer(value),
          (e: unknown) => this.handlerFailed(e),
        )
        .catch((e: unknown) => this.internalError(e));
    } else {
      this.answer(answered as AgiAnswer);
    }
  }

  onFailure(error: AgiError): void {
    this.end('protocol');
    this.owner.release(this);
    this.owner.log.warn({ code: error.code, address: this.socket.remoteAddress }, 'FastAGI protocol error: connection dropped');
    this.socket.destroy();
  }

  /** A health probe (./health-probe.ts): one fixed answer; the handler is never called. */
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

  private handlerFailed(error: unknown): void {
    this.owner.log.error({ err: error }, 'FastAGI handler failed: writing the fallback answer');
    this.respond(this.owner.fallback);
  }

  private answer(answer: AgiAnswer): void {
    let prepared: PreparedAnswer;
    try {
      prepared = prepareAnswer(answer);
    } catch (e) {
      this.owner.log.error({ err: e }, 'FastAGI handler answered what cannot be written: writing the fallback answer');
      prepared = this.owner.fallback;
    }
    this.respond(prepared);
  }

  private respond(answer: PreparedAnswer): void {
    // The connection may have ended while the handler ran (deadline, hang-up, shutdown).
    if (this.stage !== 'handling') return;
    // A synchronous handler that blocked the event loop past the deadline kept
    // the deadline timer from firing: the answer is too late all the same.
    if (performance.now() - this.startedAt >= this.owner.deadlineMs) {
      this.deadline();
      return;
    }
    this.stage = 'answering';
    this.answerLog = answer.log;
    this.wire.send(answer.command).then(
      (reply) => this.answered(reply),
      ignoreError, // closed first: finish() logs why
    );
  }

  private answered(reply: AgiReply): void {
    this.end('answered');
    try {
      if (reply.code !== 200) {
        this.owner.log.warn({ code: reply.code }, 'Asterisk did not accept the MSet answer');
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

  abort(outcome: Outcome): void {
    this.end(outcome);
    this.owner.release(this);
    this.wire.close();
    this.socket.destroy();
  }

  deadline(): void {
    if (this.outcome === undefined) {
      this.owner.log.warn(
        { stage: this.stage, address: this.socket.remoteAddress, deadlineMs: this.owner.deadlineMs },
        'FastAGI deadline passed: connection destroyed',
      );
    }
    this.abort('deadline');
  }

  internalError(error: unknown): void {
    this.owner.log.error({ err: error }, 'FastAGI connection failed');
    this.abort('internal');
  }

  /** The socket is gone, whatever the reason: the one place a connection ends. */
  finish(): void {
    clearTimeout(this.timer);
    this.wire.close();
    this.socket[kConnection] = undefined;
    this.owner.release(this);
    if (this.outcome === undefined) this.end('peer-closed');
    this.owner.ended(this.outcome!);
    const log = this.owner.log;
    if (log.isLevelEnabled('debug')) {
      log.debug(
        {
          ...this.answerLog,
          outcome: this.outcome,
          uniqueid: clip(this.uniqueId) || undefined,
          channel: clip(this.channel) || undefined,
          durationUs: Math.round((performance.now() - this.startedAt) * 1000),
          caller: clip(this.callerId),
          dialled: clip(this.extension),
          hangups: this.wire.hangups,
          socketError: this.socketError,
        },
        'FastAGI connection',
      );
    }
  }
}

/** Destroy a socket that is not served, and ignore what it says on the way out. */
export function refuse(socket: Socket): void {
  socket.on('error', ignoreError);
  socket.destroy();
}
