import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loopback, ports } from '../asterisk/paths.js';
import { repoPath } from '../repo.js';
import { parseMessageFile, type SipMessage } from './messages.js';

/**
 * sipp as the carrier on both sides of a call, running the scenario files
 * beside this module as they are: carrier-in.xml (the caller's carrier, UAC)
 * and carrier-out.xml (the far end Asterisk dials, UAS). What varies per call
 * reaches them as sipp's injection fields and keywords, built here for the
 * e2e tests and for the Asterisk benchmark alike.
 */

export const CARRIER_IN = repoPath('test/support/sip/carrier-in.xml');
export const CARRIER_OUT = repoPath('test/support/sip/carrier-out.xml');

export interface UacCall {
  /** The Request-URI user: the DID dialled. */
  dialled: string;
  /** From user part, sent as is (escape it yourself if it needs escaping). */
  callerUser: string;
  /** From display name, sent inside double quotes as is. */
  callerName?: string;
  /** Extra headers for the INVITE (e.g. P-Asserted-Identity, Diversion). */
  extraHeaders?: string[];
  /** How long to stay in the call after the answer before hanging up (ms). */
  holdMs?: number;
  /** sipp gives up after this many seconds. */
  timeoutS?: number;
  /**
   * After the answer, send a re-INVITE with these headers (the caller's
   * carrier changing the asserted identity mid-call).
   */
  reinviteHeaders?: string[];
}

export interface UasOptions {
  /**
   * Identity headers the far end adds to its 180 and 200 (a carrier asserting
   * the answering party): e.g. P-Asserted-Identity with the callee's number.
   */
  responseHeaders?: string[];
  /** Send 183 with SDP before 180. */
  earlyMedia?: boolean;
  /** Ring this long before answering (ms). */
  ringMs?: number;
  /**
   * After the answer, send a re-INVITE with these headers: the callee's
   * carrier asserting a new identity mid-call (say, after a transfer).
   */
  reinviteHeaders?: string[];
  /** Instead of answering, reject every call with this final status. */
  rejectWith?: (typeof REJECTIONS)[number];
  /** After the answer (and any re-INVITE), hang up with a BYE after this long (ms): the callee ends the call. */
  hangupAfterMs?: number;
  /** Answer with PCMA and speak (sip-tester's g711a.pcap): a call with sound in it, for recordings. */
  audio?: boolean;
}

/** The final statuses carrier-out.xml can reject with (a status is written out in a scenario). */
export const REJECTIONS = [404, 480, 486, 503] as const;

/** One injection field: sipp splits lines on ';' and has no escape for it. */
function field(value: string, what: string): string {
  if (/[;\r\n]/.test(value)) throw new Error(`${what} ${JSON.stringify(value)}: sipp's injection fields cannot carry ';' or a line break`);
  return value;
}

/** A keyword's value: each header on a line of its own after the line the keyword ends. */
function headerLines(headers: readonly string[] | undefined): string {
  return (headers ?? [])
    .map((h) => {
      if (/[\r\n]/.test(h)) throw new Error(`header ${JSON.stringify(h)} holds a line break`);
      return `\r\n${h}`;
    })
    .join('');
}

/** carrier-in.xml's line of calls.csv for one call: caller;dialled;display name;hold ms;re-INVITE. */
export function carrierInLine(call: { callerUser: string; dialled: string; callerName?: string; holdMs?: number; reinvite?: boolean }): string {
  const name = call.callerName === undefined ? '' : `"${field(call.callerName, 'caller name')}" `;
  return [field(call.callerUser, 'caller'), field(call.dialled, 'dialled number'), name, String(call.holdMs ?? 300), call.reinvite ? '1' : '0'].join(';');
}

/** carrier-in.xml's keywords (every one must be given, empty or not). */
export function carrierInKeys(options: { extraHeaders?: readonly string[]; reinviteHeaders?: readonly string[] }): string[] {
  return ['-key', 'extra_headers', headerLines(options.extraHeaders), '-key', 'reinvite_headers', headerLines(options.reinviteHeaders)];
}

/** carrier-out.xml's one line of far-end.csv, and its keywords. */
export function carrierOutArgs(options: UasOptions, dir: string): string[] {
  if (options.rejectWith !== undefined && !REJECTIONS.includes(options.rejectWith)) {
    throw new Error(`carrier-out.xml rejects with ${REJECTIONS.join(', ')} only, not ${options.rejectWith}`);
  }
  const line = [
    options.ringMs ?? 100,
    options.earlyMedia ? 1 : 0,
    options.rejectWith ?? 0,
    options.reinviteHeaders ? 1 : 0,
    options.hangupAfterMs ?? -1,
    options.audio ? 1 : 0,
  ].join(';');
  const file = path.join(dir, 'far-end.csv');
  writeFileSync(file, `SEQUENTIAL\n${line}\n`);
  return [
    '-sf', CARRIER_OUT, '-inf', file,
    '-key', 'response_headers', headerLines(options.responseHeaders),
    '-key', 'reinvite_headers', headerLines(options.reinviteHeaders),
  ];
}

function workDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'vnum-sipp-'));
}

/** Addresses and tracing shared by every sipp the e2e tests run. */
function endpointArgs(localPort: number, mediaPort: number, messageFile: string): string[] {
  return [
    '-i', loopback,
    '-p', String(localPort),
    '-mi', loopback,
    '-mp', String(mediaPort),
    '-nostdin',
    '-trace_msg', '-message_file', messageFile,
    '-trace_err', '-error_file', `${messageFile}.errors`,
  ];
}

export interface UacResult {
  /** Everything carrier-in saw, in order (sent and received). */
  messages: SipMessage[];
  /** What Asterisk sent to the caller's carrier. */
  received: SipMessage[];
  /** The final response to the INVITE (status code), if any arrived. */
  finalStatus: number | null;
  /** Wall-clock time from process start to exit (ms). */
  elapsedMs: number;
  /** sipp's exit status: 0 when the call ended as the scenario expects (answered and hung up, or refused). */
  exitCode: number | null;
  errors: string;
}

/** Places one call from carrier-in and waits for it to end. */
export async function placeCall(call: UacCall): Promise<UacResult> {
  const dir = workDir();
  const calls = path.join(dir, 'calls.csv');
  const messageFile = path.join(dir, 'uac.messages');
  writeFileSync(calls, `SEQUENTIAL\n${carrierInLine({ ...call, reinvite: call.reinviteHeaders !== undefined })}\n`);
  const args = [
    `${loopback}:${ports.asteriskSip}`,
    '-sf', CARRIER_IN, '-inf', calls,
    ...carrierInKeys(call),
    ...endpointArgs(ports.carrierIn, 16000, messageFile),
    '-m', '1',
    '-timeout', `${call.timeoutS ?? 20}s`,
    '-timeout_error',
  ];
  const started = Date.now();
  const child = spawn('sipp', args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exitCode = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const elapsedMs = Date.now() - started;
  const messages = existsSync(messageFile) ? parseMessageFile(readFileSync(messageFile, 'utf8')) : [];
  const received = messages.filter((m) => m.direction === 'received');
  const finals = received.filter((m) => m.kind === 'response' && m.status >= 200 && m.cseqMethod === 'INVITE');
  const errorFile = `${messageFile}.errors`;
  const errors = `${stderr}${existsSync(errorFile) ? readFileSync(errorFile, 'utf8') : ''}`;
  if (!process.env.VNUM_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
  return {
    messages,
    received,
    finalStatus: finals[0]?.status ?? null,
    elapsedMs,
    exitCode,
    errors,
  };
}

export interface Uas {
  /** Everything carrier-out received so far. */
  received(): SipMessage[];
  /** INVITEs that opened a dialog (re-INVITEs excluded). */
  invites(): SipMessage[];
  /** Everything carrier-out sent and received so far, in order. */
  messages(): SipMessage[];
  stop(): Promise<void>;
}

/** Starts carrier-out: the far end that answers every leg Asterisk dials. */
export async function startUas(options: UasOptions = {}): Promise<Uas> {
  const dir = workDir();
  const messageFile = path.join(dir, 'uas.messages');
  const child: ChildProcess = spawn('sipp', [...carrierOutArgs(options, dir), ...endpointArgs(ports.carrierOut, 17000, messageFile)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: dir,
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  // Ready once it holds its port: the message file exists from start-up on.
  const deadline = Date.now() + 5_000;
  while (!existsSync(messageFile)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`sipp UAS did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  let final: SipMessage[] | null = null;
  const all = (): SipMessage[] => final ?? parseMessageFile(readFileSync(messageFile, 'utf8'));
  const read = (): SipMessage[] => all().filter((m) => m.direction === 'received');
  return {
    received: read,
    messages: all,
    invites: () =>
      read().filter((m) => m.kind === 'request' && m.method === 'INVITE' && !/;\s*tag=/i.test(m.header('To') ?? '')),
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGUSR1');
        const timer = new Promise<'t'>((r) => setTimeout(() => r('t'), 3_000));
        if ((await Promise.race([exited, timer])) === 't') {
          child.kill('SIGKILL');
          await exited;
        }
      }
      if (final === null) {
        final = all();
        if (!process.env.VNUM_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** A call with carrier-out listening: what each side received. */
export interface CallOutcome {
  caller: UacResult;
  /** Everything carrier-out (the dialled far end) received. */
  callee: SipMessage[];
  /** The dialog-opening INVITEs carrier-out received. */
  invites: SipMessage[];
  /** Everything carrier-out sent and received. */
  calleeMessages: SipMessage[];
}

/** One call from carrier-in, with carrier-out answering as `uas` says; returns once Asterisk has torn down both legs. */
export async function callThrough(asterisk: { waitIdle(): Promise<void> }, uac: UacCall, uas: UasOptions = {}): Promise<CallOutcome> {
  const far = await startUas(uas);
  let caller: UacResult;
  try {
    caller = await placeCall(uac);
    // Let Asterisk finish tearing down both legs before carrier-out stops.
    await asterisk.waitIdle();
  } finally {
    await far.stop();
  }
  return { caller, callee: far.received(), invites: far.invites(), calleeMessages: far.messages() };
}
