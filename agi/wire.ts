/**
 * The FastAGI wire, as Asterisk 22's res_agi.c speaks it. Knows framing,
 * the connect-time environment, replies and argument escaping; knows nothing
 * of sessions, numbers or sockets (the caller supplies an {@link AgiPeer}).
 *
 * Why each rule exists (ding-dong 0.1.7 gets every one of them wrong):
 * - environment lines split on the first `": "` only (`agi_request: agi://h:4573/x`);
 * - one command in flight, further ones queued, never pipelined: Asterisk reads
 *   a line, runs it, replies, then reads again, and replies carry no id;
 * - every final reply (200, 510, 511, 520 single or multi-line) settles the
 *   command; `HANGUP` lines and `100` progress lines do not; close rejects all;
 * - a partial trailing line is kept for the next chunk;
 * - every argument is quoted and escaped, and CR/LF/NUL are refused, because a
 *   newline would start a second AGI command.
 */
import { AgiError } from './errors.js';

// ---------------------------------------------------------------------------
// Escaping and command builders

/** Asterisk's AGI reader stops a command at `\n`; NUL ends a C string early. */
const LINE_BREAKING = /[\r\n\0]/;
const AGI_SPECIAL = /["\\]/;
const AGI_SPECIAL_ALL = /["\\]/g;
/** Characters `__ast_app_separate_args` gives meaning to (besides the ',' delimiter). */
const APP_SPECIAL = /[\\,"()[\]]/;
const APP_SPECIAL_ALL = /[\\,"()[\]]/g;
const COMMAND_VERB = /^[A-Z]+(?: [A-Z]+)*$/;
const APP_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,79}$/;

/** Asterisk reads at most this many bytes of one command (res_agi.c, AGI_BUF_SIZE). */
export const MAX_COMMAND_BYTES = 8190;
/**
 * MSet splits its data into at most 99 arguments, and the 99th is the raw
 * remainder, escapes NOT removed: so at most 98 pairs parse as written.
 */
const MAX_MSET_PAIRS = 98;

function refuseLineBreaks(value: string, what: string): void {
  if (LINE_BREAKING.test(value)) throw new AgiError('AGI_BAD_ARGUMENT', `${what} contains CR, LF or NUL`);
}

/**
 * One AGI argument as one token: wrapped in quotes, `"` and `\` escaped
 * (res_agi.c parse_args: `"` toggles quoting, `\` makes the next byte literal).
 * CR, LF and NUL cannot be escaped at this level, so they are refused.
 */
export function quoteArgument(value: string): string {
  refuseLineBreaks(value, 'AGI argument');
  return '"' + (AGI_SPECIAL.test(value) ? value.replace(AGI_SPECIAL_ALL, '\\$&') : value) + '"';
}

/**
 * A dialplan application argument, escaped for `__ast_app_separate_args`
 * (main/app.c): a backslash makes the next character literal, so `,` cannot
 * split it and `"`, `(`, `)`, `[`, `]` cannot change the nesting.
 */
export function escapeAppArgument(value: string): string {
  return APP_SPECIAL.test(value) ? value.replace(APP_SPECIAL_ALL, '\\$&') : value;
}

/** `VERB "arg1" "arg2"` without the trailing newline ({@link AgiWire.send} adds it). */
export function buildCommand(verb: string, args: readonly string[] = []): string {
  if (!COMMAND_VERB.test(verb)) throw new AgiError('AGI_BAD_ARGUMENT', `not an AGI command verb: ${JSON.stringify(verb)}`);
  let command = verb;
  for (const arg of args) command += ' ' + quoteArgument(arg);
  return withinCommandLimit(command);
}

function withinCommandLimit(command: string): string {
  // Characters never outnumber bytes: measure bytes only when it could matter.
  if (command.length * 3 > MAX_COMMAND_BYTES && Buffer.byteLength(command) > MAX_COMMAND_BYTES) {
    throw new AgiError('AGI_BAD_ARGUMENT', `AGI command longer than ${MAX_COMMAND_BYTES} bytes`);
  }
  return command;
}

/**
 * `EXEC <app> "<data>"`: the application's data is ONE token (ding-dong's
 * `exec(app, a, b)` sends `a b` and Asterisk silently drops `b`).
 */
export function buildExec(application: string, data: string): string {
  if (!APP_NAME.test(application)) {
    throw new AgiError('AGI_BAD_ARGUMENT', `not an application name: ${JSON.stringify(application)}`);
  }
  // The name is a validated identifier: written bare, as Asterisk's own examples do.
  return withinCommandLimit('EXEC ' + application + ' ' + quoteArgument(data));
}

/**
 * `EXEC MSet "A=1,B=2"`: several channel variables in one round trip. Values
 * are escaped twice: for MSet's own argument parsing (`,` `\` `"` `(` `)` `[` `]`),
 * then for the AGI line (`"` `\`). Names are plain identifiers.
 */
export function buildMSet(variables: ReadonlyArray<readonly [name: string, value: string]>): string {
  if (variables.length === 0 || variables.length > MAX_MSET_PAIRS) {
    throw new AgiError('AGI_BAD_ARGUMENT', `MSet takes 1 to ${MAX_MSET_PAIRS} variables`);
  }
  let data = '';
  for (let i = 0; i < variables.length; i++) {
    const [name, value] = variables[i]!;
    if (typeof value !== 'string') throw new AgiError('AGI_BAD_ARGUMENT', `value of ${String(name)} is not a string`);
    if (typeof name !== 'string' || !VARIABLE_NAME.test(name)) {
      throw new AgiError('AGI_BAD_ARGUMENT', `not a channel variable name: ${JSON.stringify(name)}`);
    }
    refuseLineBreaks(value, `value of ${name}`);
    if (i > 0) data += ',';
    data += name + '=' + escapeAppArgument(value);
  }
  return buildExec('MSet', data);
}

// ---------------------------------------------------------------------------
// Replies

export interface AgiReply {
  /** 200 on success; 510 unknown command, 511 dead channel, 520 usage, 503 out of memory. */
  readonly code: number;
  /** The `result=` value (200 and a few others), as sent. */
  readonly result: string | undefined;
  /** The parenthesised data after the result, if any. */
  readonly data: string | undefined;
  /** Everything after the code: the rest of the line, or a multi-line reply's lines joined by `\n`. */
  readonly text: string;
}

const RESULT_PREFIX = 'result=';

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** The 3-digit code of a reply line, or -1 when the line is not one. */
function replyCode(line: string): number {
  if (line.length < 3) return -1;
  const a = line.charCodeAt(0);
  const b = line.charCodeAt(1);
  const c = line.charCodeAt(2);
  if (!isDigit(a) || !isDigit(b) || !isDigit(c)) return -1;
  if (line.length > 3) {
    const sep = line.charCodeAt(3);
    if (sep !== 32 && sep !== 45) return -1; // ' ' or '-'
  }
  return (a - 48) * 100 + (b - 48) * 10 + (c - 48);
}

/** A single-line reply: `200 result=1 (data) endpos=123`, `510 Invalid or unknown command`. */
export function parseReplyLine(code: number, line: string): AgiReply {
  const text = line.length > 4 ? line.slice(4) : '';
  if (!text.startsWith(RESULT_PREFIX)) return { code, result: undefined, data: undefined, text };
  const space = text.indexOf(' ', RESULT_PREFIX.length);
  const result = text.slice(RESULT_PREFIX.length, space < 0 ? text.length : space);
  let data: string | undefined;
  if (space >= 0 && text.charCodeAt(space + 1) === 40 /* ( */) {
    const close = text.lastIndexOf(')');
    if (close > space) data = text.slice(space + 2, close);
  }
  return { code, result, data, text };
}

// ---------------------------------------------------------------------------
// The connection state machine

export type AgiEnvironment = ReadonlyMap<string, string>;

export interface AgiLimits {
  /** Longest line accepted, in characters (environment or reply). */
  maxLineLength: number;
  /** Whole environment, in characters. */
  maxEnvironmentLength: number;
  /** Environment lines (about 22 plus one per AGI() argument). */
  maxEnvironmentLines: number;
  /** Lines of one multi-line (520-) reply. */
  maxReplyLines: number;
}

export const DEFAULT_AGI_LIMITS: Readonly<AgiLimits> = Object.freeze({
  maxLineLength: 4096,
  maxEnvironmentLength: 16384,
  maxEnvironmentLines: 160,
  maxReplyLines: 256,
});

/** What the wire needs from its owner. Plain callbacks: nothing to subscribe, nothing to pile up. */
export interface AgiPeer {
  /** Bytes for Asterisk. */
  write(data: string): void;
  /** The environment is complete (called once, after the chunk that completed it). */
  onEnvironment(environment: AgiEnvironment): void;
  /** The wire gave up (bad input, command timeout): drop the connection. Called at most once. */
  onFailure(error: AgiError): void;
}

const enum Phase {
  Environment,
  Commands,
  Closed,
}

interface QueuedCommand {
  readonly line: string;
  readonly timeoutMs: number;
  readonly resolve: (reply: AgiReply) => void;
  readonly reject: (error: Error) => void;
}

/** `agi_` then 1-64 of [A-Za-z0-9_]: Asterisk sends nothing else before the blank line. */
function isEnvironmentName(buffer: string, start: number, end: number): boolean {
  const length = end - start;
  if (length < 5 || length > 68 || !buffer.startsWith('agi_', start)) return false;
  for (let i = start + 4; i < end; i++) {
    const c = buffer.charCodeAt(i);
    // 0-9, A-Z, _, a-z
    if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || c === 95 || (c >= 97 && c <= 122))) return false;
  }
  return true;
}

/** One FastAGI connection's protocol state: what was read, what is in flight. */
export class AgiWire {
  private readonly peer: AgiPeer;
  private readonly limits: AgiLimits;
  private phase = Phase.Environment;
  private partial = '';
  private env: Map<string, string> | undefined = new Map();
  private envLength = 0;
  private envCompleted = false;
  private inFlight: QueuedCommand | undefined;
  private queue: QueuedCommand[] | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Code of an open multi-line reply (`520-`), and its lines so far. */
  private multiCode = -1;
  private multiLines: string[] | undefined;
  private hangupLines = 0;

  constructor(peer: AgiPeer, limits?: Partial<AgiLimits>) {
    this.peer = peer;
    this.limits = limits ? { ...DEFAULT_AGI_LIMITS, ...limits } : DEFAULT_AGI_LIMITS;
  }

  /** How many bare `HANGUP` lines Asterisk has sent (the channel hung up; commands still get replies). */
  get hangups(): number {
    return this.hangupLines;
  }

  get closed(): boolean {
    return this.phase === Phase.Closed;
  }

  /** True once the blank line that ends the environment has been read. */
  get ready(): boolean {
    return this.phase === Phase.Commands;
  }

  /** Feed bytes as received (any chunking). */
  push(chunk: string): void {
    if (this.phase === Phase.Closed) return;
    const max = this.limits.maxLineLength;
    // The kept partial line holds no newline, so only the new chunk is searched:
    // a peer trickling one byte at a time costs O(1) per byte, not O(line).
    if (chunk.indexOf('\n') < 0) {
      this.partial += chunk;
      if (this.partial.length > max + 1) this.fail(new AgiError('AGI_LINE_TOO_LONG', `line longer than ${max} characters`));
      return;
    }
    const buffer = this.partial.length === 0 ? chunk : this.partial + chunk;
    let start = 0;
    for (;;) {
      const newline = buffer.indexOf('\n', start);
      if (newline < 0) break;
      const end = newline > start && buffer.charCodeAt(newline - 1) === 13 ? newline - 1 : newline;
      if (end - start > max) {
        this.fail(new AgiError('AGI_LINE_TOO_LONG', `line longer than ${max} characters`));
        return;
      }
      if (this.phase === Phase.Environment) this.environmentLine(buffer, start, end);
      else this.replyLine(buffer.slice(start, end));
      start = newline + 1;
      if (this.closed) return;
    }
    this.partial = start === 0 ? buffer : buffer.slice(start);
    if (this.partial.length > max + 1 /* a trailing CR may still be waiting for its LF */) {
      this.fail(new AgiError('AGI_LINE_TOO_LONG', `line longer than ${max} characters`));
      return;
    }
    // Deferred to the end of the chunk: any reply that came in the same chunk as
    // the environment was sent before our first command, so it is stray, not ours.
    if (this.envCompleted) {
      this.envCompleted = false;
      const env = this.env!;
      this.env = undefined;
      this.peer.onEnvironment(env);
    }
  }

  /**
   * Send one command line (no newline; use the builders). Commands are queued
   * and written one at a time; each promise settles with its own reply, or
   * rejects when the connection closes or `timeoutMs` (if > 0) passes first.
   * A timeout closes the connection: a late reply could not be paired safely.
   */
  send(line: string, timeoutMs = 0): Promise<AgiReply> {
    if (this.phase === Phase.Closed) return Promise.reject(new AgiError('AGI_CLOSED', 'AGI connection closed'));
    if (this.phase === Phase.Environment) {
      return Promise.reject(new AgiError('AGI_NOT_READY', 'AGI environment not complete yet'));
    }
    if (LINE_BREAKING.test(line)) {
      return Promise.reject(new AgiError('AGI_BAD_ARGUMENT', 'AGI command contains CR, LF or NUL'));
    }
    return new Promise<AgiReply>((resolve, reject) => {
      const command: QueuedCommand = { line, timeoutMs, resolve, reject };
      if (this.inFlight === undefined) this.dispatch(command);
      else (this.queue ??= []).push(command);
    });
  }

  /** Reject everything pending and ignore further input. Idempotent. */
  close(reason?: Error): void {
    if (this.phase === Phase.Closed) return;
    this.phase = Phase.Closed;
    this.partial = '';
    this.env = undefined;
    this.multiLines = undefined;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const inFlight = this.inFlight;
    const queue = this.queue;
    this.inFlight = undefined;
    this.queue = undefined;
    if (inFlight === undefined && (queue === undefined || queue.length === 0)) return;
    const error = reason ?? new AgiError('AGI_CLOSED', 'AGI connection closed');
    inFlight?.reject(error);
    if (queue !== undefined) for (const command of queue) command.reject(error);
  }

  private fail(error: AgiError): void {
    if (this.phase === Phase.Closed) return;
    this.close(error);
    this.peer.onFailure(error);
  }

  private dispatch(command: QueuedCommand): void {
    this.inFlight = command;
    if (command.timeoutMs > 0) this.timer = setTimeout(onCommandTimeout, command.timeoutMs, this);
    this.peer.write(command.line + '\n');
  }

  /** @internal called by the command timer */
  timedOut(): void {
    this.timer = undefined;
    this.fail(new AgiError('AGI_TIMEOUT', 'no reply from Asterisk in time'));
  }

  private settle(reply: AgiReply): void {
    const command = this.inFlight!;
    this.inFlight = undefined;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const next = this.queue?.shift();
    if (next !== undefined) this.dispatch(next);
    command.resolve(reply);
  }

  /** One environment line: `buffer[start, end)`, sliced only into its name and value. */
  private environmentLine(buffer: string, start: number, end: number): void {
    const env = this.env!;
    if (end === start) {
      this.phase = Phase.Commands;
      this.envCompleted = true;
      return;
    }
    this.envLength += end - start + 1;
    if (this.envLength > this.limits.maxEnvironmentLength || env.size >= this.limits.maxEnvironmentLines) {
      this.fail(new AgiError('AGI_ENV_TOO_LARGE', 'AGI environment too large'));
      return;
    }
    // Split on the FIRST ": " only: values hold colons (agi_request, caller names).
    let sep = buffer.indexOf(': ', start);
    let valueStart = sep + 2;
    if (sep < 0 || sep >= end) {
      if (buffer.charCodeAt(end - 1) !== 58 /* : */) {
        this.fail(new AgiError('AGI_BAD_ENV_LINE', 'AGI environment line is not "agi_name: value"'));
        return;
      }
      sep = end - 1; // an empty value whose trailing space was stripped on the way
      valueStart = end;
    }
    if (!isEnvironmentName(buffer, start, sep)) {
      this.fail(new AgiError('AGI_BAD_ENV_LINE', 'AGI environment line has a bad name'));
      return;
    }
    const key = buffer.slice(start, sep);
    if (env.has(key)) {
      this.fail(new AgiError('AGI_BAD_ENV_LINE', 'AGI environment line repeats a name'));
      return;
    }
    env.set(key, buffer.slice(valueStart, end));
  }

  private replyLine(line: string): void {
    if (this.multiCode >= 0) {
      this.multiLine(line);
      return;
    }
    // Asterisk writes bare HANGUP lines (AGISIGHUP) whenever the channel hangs up.
    if (line === 'HANGUP') {
      this.hangupLines++;
      return;
    }
    if (this.inFlight === undefined) {
      this.fail(new AgiError('AGI_UNEXPECTED_LINE', 'line from Asterisk with no command in flight'));
      return;
    }
    const code = replyCode(line);
    if (code < 0) {
      this.fail(new AgiError('AGI_BAD_REPLY', 'not an AGI reply line'));
      return;
    }
    if (line.charCodeAt(3) === 45 /* - */) {
      this.multiCode = code;
      this.multiLines = [line.slice(4)];
      return;
    }
    if (code === 100) return; // "100 result=0 Trying...": progress, the final reply follows
    this.settle(parseReplyLine(code, line));
  }

  /** Inside `520-…` up to `520 End of proper usage.`; usage text is free-form. */
  private multiLine(line: string): void {
    const lines = this.multiLines!;
    if (replyCode(line) === this.multiCode && line.charCodeAt(3) === 32) {
      lines.push(line.slice(4));
      const code = this.multiCode;
      this.multiCode = -1;
      this.multiLines = undefined;
      this.settle({ code, result: undefined, data: undefined, text: lines.join('\n') });
      return;
    }
    if (lines.length >= this.limits.maxReplyLines) {
      this.fail(new AgiError('AGI_BAD_REPLY', 'multi-line AGI reply too long'));
      return;
    }
    lines.push(line);
  }
}

function onCommandTimeout(wire: AgiWire): void {
  wire.timedOut();
}
