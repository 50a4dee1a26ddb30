/**
 * Shared pieces of the reliability campaign (docs/reliability.md): a raw
 * FastAGI client that records exactly what the router wrote, and the
 * campaign's sizes (defaults as docs/reliability.md gives them; larger runs
 * through env vars).
 */
import net from 'node:net';
import { callEnvironment } from '../support/fake-asterisk.js';

/** A whole number from the environment, else the default. */
export function sizeFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new Error(`${name} must be a whole number, got "${raw}"`);
  return Number(raw);
}

/** One of the router's answers, as dialplan/vnum.conf reads it. */
export interface Answer {
  status: string;
  target: string;
  cli: string;
  session: string;
}

// A refusal also names its announcement (VNUM_SOUND, a sound name: src/routing/answer.ts, SOUND_NAME).
const MSET =
  /^EXEC MSet "VNUM_STATUS=(BRIDGE|NO_SESSION|ENDED|NOT_ALLOWED|NOT_POOL|INVALID|ERROR|PIN_FAILED|FALLBACK),VNUM_TARGET=([A-Za-z0-9+._:-]{0,64}),VNUM_CLI=([A-Za-z0-9+._:-]{0,64}),VNUM_SESSION=([A-Za-z0-9+._:-]{0,64})(?:,VNUM_SOUND=[A-Za-z0-9_][A-Za-z0-9_/-]{0,63})?"$/;

/** The answer in one line the router wrote, or undefined if the line is not a well-formed answer. */
export function parseAnswer(line: string): Answer | undefined {
  const m = MSET.exec(line);
  if (!m) return undefined;
  return { status: m[1]!, target: m[2]!, cli: m[3]!, session: m[4]! };
}

export interface Exchange {
  /** Everything the router wrote, verbatim (latin1, so binary survives). */
  received: string;
  /** The router closed the connection (rather than our timeout). */
  closedByRouter: boolean;
  error: string | undefined;
  /** ms from connect to close */
  ms: number;
}

export interface ExchangeOptions {
  /** Written on connect: one write, or several (one per event-loop turn). */
  send: Buffer | string | Array<Buffer | string>;
  /** After the first complete line from the router, write this (Asterisk's 200); null: write nothing. */
  reply?: string | null;
  /** After sending: half-close (end), reset (RST), or keep the socket open. */
  then?: 'end' | 'reset' | 'hold';
  localAddress?: string;
  /** Give up after this long (ms) and destroy the socket. */
  timeoutMs?: number;
}

/** One FastAGI connection: send, maybe reply, and record what the router wrote until it closed. */
export function exchange(port: number, options: ExchangeOptions): Promise<Exchange> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: options.localAddress });
    let received = '';
    let replied = false;
    let error: string | undefined;
    let timedOut = false;
    const reply = options.reply === undefined ? '200 result=0\n' : options.reply;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (!replied && reply !== null && received.includes('\n')) {
        replied = true;
        if (socket.writable) socket.write(reply);
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error ??= e.code ?? e.message;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, options.timeoutMs ?? 10_000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ received, closedByRouter: !timedOut, error, ms: performance.now() - started });
    });
    socket.once('connect', () => {
      void (async () => {
        const parts = Array.isArray(options.send) ? options.send : [options.send];
        for (const part of parts) {
          if (socket.destroyed || !socket.writable) return;
          socket.write(part);
          if (parts.length > 1) await new Promise((r) => setImmediate(r));
        }
        if (options.then === 'reset') socket.resetAndDestroy();
        else if (options.then !== 'hold' && !socket.destroyed) socket.end();
      })();
    });
  });
}

/** A whole call, as Asterisk makes it: the answer, or undefined when the router closed without a well-formed one. */
export async function routeCall(port: number, caller: string, dialled: string): Promise<{ answer: Answer | undefined; raw: Exchange }> {
  const raw = await exchange(port, { send: callEnvironment(caller, dialled), then: 'hold', timeoutMs: 10_000 });
  const lines = raw.received.split('\n');
  // Exactly one line, newline-terminated, and nothing after it.
  const answer = lines.length === 2 && lines[1] === '' ? parseAnswer(lines[0]!) : undefined;
  return { answer, raw };
}

/** A small seeded PRNG (mulberry32): every run is reproducible from its seed. The benchmarks' own, one copy. */
export { prng } from '../../bench/seed.js';

/** Asterisk's config format as far as manager.conf uses it: sections, `key = value`, `;` comments, repeated keys kept in order. */
export function parseAsteriskConf(text: string): Map<string, Array<[string, string]>> {
  const sections = new Map<string, Array<[string, string]>>();
  let current: Array<[string, string]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/(^|[^\\]);.*$/, '$1').trim();
    if (line === '') continue;
    const section = /^\[([^\]]+)\]$/.exec(line);
    if (section) {
      current = [];
      sections.set(section[1]!, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0 || current === undefined) throw new Error(`not a setting: ${raw}`);
    current.push([line.slice(0, eq).trim().replace(/\s+/g, ''), line.slice(eq + 1).trim()]);
  }
  return sections;
}
