/**
 * Hostile FastAGI input against `vnum serve` (the built
 * executable, default settings: 256 connections, 2 s deadline). A fuzz run of
 * random and mutated sessions, clients trickling one byte at a time, and
 * 10,000 idle connections; meanwhile a legitimate call is placed every 50 ms
 * and must be answered. Throughout: the router stays up, its memory (sampled
 * from /proc every 100 ms) stays bounded, and no session of invalid input is
 * ever answered BRIDGE. A second router with its cap raised above 10,000
 * holds all the idle connections at once, to measure what they cost.
 *
 * Sizes: VNUM_RELIABILITY_FUZZ_SESSIONS (default 100,000),
 * VNUM_RELIABILITY_IDLE (default 10,000), VNUM_RELIABILITY_SEED (fuzz seed).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vnum } from '../support/cli.js';
import { callEnvironment } from '../support/fake-asterisk.js';
import { cpuSecondsOf, memoryOf } from '../support/proc.js';
import { startServe, type Serve } from '../support/serve.js';
import { sleep } from '../support/wait.js';
import { exchange, parseAnswer, prng, routeCall, sizeFromEnv } from './lib.js';

const FUZZ_SESSIONS = sizeFromEnv('VNUM_RELIABILITY_FUZZ_SESSIONS', 100_000);
const IDLE = sizeFromEnv('VNUM_RELIABILITY_IDLE', 10_000);
const SEED = sizeFromEnv('VNUM_RELIABILITY_SEED', 5);
/** Fuzz sessions in flight at once. */
const FUZZ_CONCURRENCY = 200;
/** Memory bound for the router: a fixed ceiling, far above what it needs (see docs/reliability.md). */
const RSS_LIMIT = 256 * 1024 * 1024;
const IDLE_WORKER = new URL('./workers/idle.mjs', import.meta.url).pathname;

const A = '+447911000001';
const D = '+447911000002';
const ENV = { VNUM_DEFAULT_COUNTRY: 'GB' };

let dir: string;
let db: string;
let serve: Serve;
let dMasked: string;
let aMasked: string;
let sampler: ReturnType<typeof setInterval>;
const rssSamples: number[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-rel-hostile-'));
  db = join(dir, 'vnum.db');
  expect(vnum(['--db', db, 'pool', 'add', '+442079460001', '+442079460002', '+442079460003'], ENV).code).toBe(0);
  const session = JSON.parse(vnum(['--db', db, 'session', 'create', 'o1', A, D, '--json'], ENV).stdout);
  aMasked = session.parties[0].maskedAs;
  dMasked = session.parties[1].maskedAs;
  serve = await startServe({ db });
  sampler = setInterval(() => {
    const m = memoryOf(serve.pid);
    if (m) rssSamples.push(m.rss);
  }, 100);
});
afterAll(async () => {
  clearInterval(sampler);
  await serve?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

/** Legitimate calls, one every 50 ms, until stopped: how each was answered. */
function legitimateCalls(port: () => number): { stop: () => Promise<{ bridged: number; other: string[] }> } {
  let running = true;
  const other: string[] = [];
  let bridged = 0;
  const loop = (async () => {
    while (running) {
      const { answer, raw } = await routeCall(port(), A, dMasked);
      if (answer && answer.status === 'BRIDGE' && answer.target === D && answer.cli === aMasked && answer.session === 'o1') bridged++;
      else other.push(JSON.stringify(raw.received));
      await sleep(50);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { bridged, other };
    },
  };
}

// ---------------------------------------------------------------------------
// The fuzz corpus. Every session is invalid input: whatever the router makes
// of it, BRIDGE is never a right answer. Strangers (+447400 9xxxxx) are in no
// session; A is, but only ever with a caller ID or DID no Asterisk would send.

/** Characters no caller ID or DID may carry (neither digits, separators, nor whitespace trim() would drop). */
const HOSTILE = ['&', '&PJSIP/carrier/+447911000002', '"', "'", ';', ',', '|', '${EXTEN}', '<sip:x@y>', 'tel:', '*', '#', 'a', 'X', '\0', '\x01', '\x7f', '\u0663', '\uff11', '%00', '\\', '/', ':', '=', '!', '?', '@', '_', '~', '`', '^', '\u202e'];
const REPLIES = ['200 result=0\n', 'HANGUP\n', '510 Invalid or unknown command\n', '520-Invalid command syntax.  Proper usage follows:\n520 End of proper usage.\n', '100 result=0 Trying...\n', '200 result=1 (timeout)\n'];

type Category =
  | 'binary'
  | 'mutated'
  | 'hostile-number'
  | 'truncated'
  | 'oversize'
  | 'stray-replies'
  | 'stranger'
  | 'held';

interface FuzzCase {
  category: Category;
  send: Buffer | string | Array<Buffer | string>;
  reply: string | null;
  then: 'end' | 'reset' | 'hold';
}

function fuzzCase(random: () => number, pool: string[]): FuzzCase {
  const pick = <T,>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
  const stranger = (): string => `+447400${String(900_000 + int(0, 99_999))}`;
  const strangerEnv = (): string => callEnvironment(stranger(), pick(pool));
  const then = (): 'end' | 'reset' => (random() < 0.15 ? 'reset' : 'end');
  const r = random();
  if (r < 0.15) {
    const bytes = randomBytes(int(0, 8192));
    if (random() < 0.3) bytes.write('\n\n', int(0, Math.max(0, bytes.length - 2)), 'latin1');
    return { category: 'binary', send: bytes, reply: pick(REPLIES), then: then() };
  }
  if (r < 0.4) {
    let bytes = Buffer.from(strangerEnv(), 'latin1');
    for (let ops = int(1, 3); ops > 0; ops--) {
      const at = int(0, bytes.length);
      switch (int(0, 6)) {
        case 0: // flip bytes
          for (let k = int(1, 20); k > 0; k--) bytes[int(0, bytes.length - 1)] = int(0, 255);
          break;
        case 1: // delete a range
          bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + int(1, 40)))]);
          break;
        case 2: // insert random bytes
          bytes = Buffer.concat([bytes.subarray(0, at), randomBytes(int(1, 64)), bytes.subarray(at)]);
          break;
        case 3: { // duplicate a line
          const lines = bytes.toString('latin1').split('\n');
          const i = int(0, Math.max(0, lines.length - 3));
          lines.splice(i, 0, lines[i]!);
          bytes = Buffer.from(lines.join('\n'), 'latin1');
          break;
        }
        case 4: // CRLF line ends
          bytes = Buffer.from(bytes.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');
          break;
        case 5: { // shuffle two lines
          const lines = bytes.toString('latin1').split('\n');
          const i = int(0, lines.length - 1);
          const j = int(0, lines.length - 1);
          [lines[i], lines[j]] = [lines[j]!, lines[i]!];
          bytes = Buffer.from(lines.join('\n'), 'latin1');
          break;
        }
        default: // truncate
          bytes = bytes.subarray(0, at);
      }
    }
    return { category: 'mutated', send: bytes, reply: pick(REPLIES), then: then() };
  }
  if (r < 0.55) {
    // A calling D's masked number, with something no number contains in the caller ID or the DID.
    const decorate = (n: string): string => {
      const bad = pick(HOSTILE);
      const where = int(0, 2);
      return where === 0 ? bad + n : where === 1 ? n + bad : n.slice(0, 6) + bad + n.slice(6);
    };
    const inCaller = random() < 0.6;
    const env = callEnvironment(inCaller ? decorate(A) : A, inCaller ? dMasked : decorate(dMasked));
    return { category: 'hostile-number', send: env, reply: '200 result=0\n', then: 'hold' };
  }
  if (r < 0.65) {
    // The legitimate call's environment, cut before the blank line that ends it.
    const env = callEnvironment(A, dMasked);
    return { category: 'truncated', send: env.slice(0, int(0, env.length - 1)), reply: null, then: then() };
  }
  if (r < 0.75) {
    // The legitimate call's environment, made too big in one of three ways.
    const env = callEnvironment(A, dMasked).slice(0, -1);
    const kind = int(0, 3);
    const extra =
      kind === 0
        ? `agi_arg_1: ${'x'.repeat(int(4097, 20_000))}\n` // one over-long line
        : kind === 1
          ? Array.from({ length: int(140, 400) }, (_, i) => `agi_arg_${i + 1}: x\n`).join('') // too many lines
          : kind === 2
            ? Array.from({ length: int(6, 12) }, (_, i) => `agi_arg_${i + 1}: ${'y'.repeat(3000)}\n`).join('') // over 16 KiB
            : 'z'.repeat(int(4097, 20_000)); // no newline at all
    const payload = kind === 3 ? extra : env + extra + '\n';
    return { category: 'oversize', send: payload, reply: '200 result=0\n', then: then() };
  }
  if (r < 0.85) {
    // A stranger's environment with replies where none belong: before it, inside it, right after it.
    const env = strangerEnv();
    const lines = env.split('\n');
    const where = int(0, 2);
    const stray = Array.from({ length: int(1, 3) }, () => pick(REPLIES)).join('');
    const payload =
      where === 0 ? stray + env : where === 1 ? [...lines.slice(0, 5), stray.slice(0, -1), ...lines.slice(5)].join('\n') : env + stray;
    return { category: 'stray-replies', send: payload, reply: pick(REPLIES), then: 'hold' };
  }
  if (r < 0.998) {
    // A well-formed call from a stranger, sent in pieces, with a reply Asterisk could give.
    const env = strangerEnv();
    const pieces: string[] = [];
    for (let i = 0; i < env.length; ) {
      const n = int(1, 200);
      pieces.push(env.slice(i, i + n));
      i += n;
    }
    return { category: 'stranger', send: random() < 0.5 ? env : pieces, reply: pick(REPLIES), then: 'hold' };
  }
  // Half an environment, then silence: only the deadline ends it.
  return { category: 'held', send: strangerEnv().slice(0, int(0, 300)), reply: null, then: 'hold' };
}

describe('vnum serve under hostile FastAGI input', () => {
  it(`${FUZZ_SESSIONS} fuzz sessions: no BRIDGE, the router stays up and bounded, legitimate calls answered throughout`, async () => {
    const random = prng(SEED);
    const pool = ['+442079460001', '+442079460002', '+442079460003'];
    const legit = legitimateCalls(() => serve.port);
    const counts: Record<string, { n: number; answered: number; statuses: Record<string, number> }> = {};
    const bridges: string[] = [];
    const malformed: string[] = [];
    let next = 0;
    const started = performance.now();
    const routerCpu = cpuSecondsOf(serve.pid)!;
    const ownCpu = process.cpuUsage();
    await Promise.all(
      Array.from({ length: FUZZ_CONCURRENCY }, async () => {
        while (next < FUZZ_SESSIONS) {
          next++;
          const c = fuzzCase(random, pool);
          const result = await exchange(serve.port, { send: c.send, reply: c.reply, then: c.then, timeoutMs: 10_000 });
          const entry = (counts[c.category] ??= { n: 0, answered: 0, statuses: {} });
          entry.n++;
          if (result.received === '') continue;
          entry.answered++;
          // Anything the router writes is exactly one well-formed answer line.
          const answer = result.received.endsWith('\n') && result.received.indexOf('\n') === result.received.length - 1
            ? parseAnswer(result.received.slice(0, -1))
            : undefined;
          if (answer === undefined) malformed.push(`${c.category}: ${JSON.stringify(result.received.slice(0, 200))}`);
          else {
            entry.statuses[answer.status] = (entry.statuses[answer.status] ?? 0) + 1;
            if (answer.status === 'BRIDGE') bridges.push(`${c.category}: ${JSON.stringify(String(c.send).slice(0, 300))}`);
          }
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const routerCpuUsed = cpuSecondsOf(serve.pid)! - routerCpu;
    const own = process.cpuUsage(ownCpu);
    const { bridged, other } = await legit.stop();

    expect(bridges).toEqual([]);
    expect(malformed).toEqual([]);
    expect(serve.alive()).toBe(true);
    // Well-formed stranger calls are answered NO_SESSION; hostile numbers INVALID (in the caller ID) or
    // NOT_POOL (in the DID: no pool number contains them), or nothing.
    expect(Object.keys(counts.stranger?.statuses ?? {}).filter((s) => s !== 'NO_SESSION')).toEqual([]);
    expect(counts.stranger!.statuses.NO_SESSION).toBeGreaterThan(0);
    expect(Object.keys(counts['hostile-number']?.statuses ?? {}).filter((s) => s !== 'INVALID' && s !== 'NOT_POOL')).toEqual([]);
    // Truncated and oversized environments are never answered.
    expect(counts.truncated!.answered).toBe(0);
    expect(counts.oversize!.answered).toBe(0);
    expect(other, 'legitimate calls not bridged').toEqual([]);
    expect(bridged).toBeGreaterThan(0);
    const peak = memoryOf(serve.pid)!.peak;
    expect(peak).toBeLessThan(RSS_LIMIT);
    console.log(
      `hostile: fuzz ${FUZZ_SESSIONS} sessions (seed ${SEED}) in ${seconds.toFixed(1)} s (router CPU ${routerCpuUsed.toFixed(1)} s, ` +
        `fuzzer CPU ${((own.user + own.system) / 1e6).toFixed(1)} s): ${JSON.stringify(counts)}; ` +
        `0 BRIDGE; ${bridged} legitimate calls bridged meanwhile, none refused; router RSS peak ${mb(peak)}`,
    );
  }, 600_000);

  it('clients trickling one byte at a time: cut off, never answered unless whole in time; legitimate calls answered', async () => {
    const legit = legitimateCalls(() => serve.port);
    // 300 slow clients (one byte every 50 ms: the environment would take ~35 s), more than
    // the 256 the router takes at once, so they also push each other out ...
    const slow = Array.from({ length: 300 }, () => slowClient(serve.port, callEnvironment(A, dMasked), 50));
    // ... and 40 that trickle a whole legitimate call one byte at a time, but fast enough (~1 ms a byte).
    const fast = Array.from({ length: 40 }, () => slowClient(serve.port, callEnvironment(A, dMasked), 1));
    const slowResults = await Promise.all(slow);
    const fastResults = await Promise.all(fast);
    const { bridged, other } = await legit.stop();

    // The slow ones: closed by the router (evicted, or at its deadline) with nothing written.
    expect(slowResults.filter((r) => r.received !== '')).toEqual([]);
    const atDeadline = slowResults.filter((r) => r.ms >= 1_900).length;
    // None lasts much past the deadline.
    expect(Math.max(...slowResults.map((r) => r.ms))).toBeLessThan(10_000);
    // The fast ones are legitimate calls: each either bridged or cut off, nothing else.
    const fastOutcomes = fastResults.map((r) => (r.received === '' ? 'cut' : parseAnswer(r.received.trimEnd())?.status ?? r.received));
    expect(fastOutcomes.filter((o) => o !== 'cut' && o !== 'BRIDGE')).toEqual([]);
    // More connections than the cap: a legitimate call still waiting for its environment to be
    // read can be the oldest, and be evicted (closed unanswered: the dialplan fails closed).
    // It never gets anything but its BRIDGE or nothing.
    expect(other.filter((o) => o !== '""'), 'a legitimate call got something other than its BRIDGE').toEqual([]);
    expect(bridged).toBeGreaterThan(0);
    expect(serve.alive()).toBe(true);
    console.log(
      `hostile: ${slowResults.length} clients at 1 byte / 50 ms all cut off with nothing written (${atDeadline} at the 2 s deadline, ` +
        `${slowResults.length - atDeadline} evicted earlier to make room); ` +
        `${fastOutcomes.filter((o) => o === 'BRIDGE').length}/${fastResults.length} byte-at-a-time legitimate calls bridged in time; ` +
        `legitimate calls meanwhile: ${bridged} bridged, ${other.length} cut off by eviction`,
    );
  }, 120_000);

  it(`${IDLE} idle connections against the default cap of 256: idle ones evicted, legitimate calls still answered`, async () => {
    const legit = legitimateCalls(() => serve.port);
    const figures = await idleFlood(serve.port, IDLE, 64, 20_000);
    const { bridged, other } = await legit.stop();
    expect(figures.connected + figures.failed).toBe(IDLE);
    expect(figures.bytesReceived).toBe(0);
    expect(figures.closedByUs).toBe(0); // every one was closed by the router: evicted, or at the deadline
    expect(other.filter((o) => o !== '""'), 'a legitimate call got something other than its BRIDGE').toEqual([]);
    expect(bridged).toBeGreaterThan(0);
    expect(serve.alive()).toBe(true);
    const peak = memoryOf(serve.pid)!.peak;
    expect(peak).toBeLessThan(RSS_LIMIT);
    console.log(
      `hostile: ${IDLE} idle connections vs maxConnections 256: ${figures.connected} accepted, ${figures.failed} refused at connect, ` +
        `all closed by the router (at most ${figures.maxOpen} open at once on the client); legitimate calls: ${bridged} bridged, ` +
        `${other.length} cut off by eviction; router RSS peak so far ${mb(peak)} (samples: max ${mb(Math.max(...rssSamples))})`,
    );
  }, 120_000);

  it(`a router with its cap raised holds all ${IDLE} idle connections at once, still answers a call, and its memory stays bounded`, async () => {
    const big = await startServe({ db, args: ['--max-connections', String(IDLE + 1000), '--deadline', '10s'], fdLimit: IDLE + 5000 });
    try {
      const before = memoryOf(big.pid)!.rss;
      const flood = idleFloodHeld(big.port, IDLE, 256, 60_000);
      await flood.allConnected;
      await sleep(300);
      const held = memoryOf(big.pid)!;
      const { answer } = await routeCall(big.port, A, dMasked);
      expect(answer).toEqual({ status: 'BRIDGE', target: D, cli: aMasked, session: 'o1' });
      flood.release();
      const figures = await flood.done;
      expect(figures.connected).toBe(IDLE);
      expect(figures.maxOpen).toBe(IDLE);
      expect(figures.bytesReceived).toBe(0);
      expect(big.alive()).toBe(true);
      expect(held.peak).toBeLessThan(RSS_LIMIT);
      console.log(
        `hostile: ${IDLE} idle connections held at once by a router capped at ${IDLE + 1000}: RSS ${mb(before)} before, ${mb(held.rss)} holding them ` +
          `(~${((held.rss - before) / IDLE / 1024).toFixed(1)} KiB each), peak ${mb(held.peak)}; a call placed meanwhile bridged`,
      );
    } finally {
      await big.stop();
    }
  }, 120_000);
});

/** Writes `text` one byte every `gapMs`; returns what the router wrote before it closed. */
function slowClient(port: number, text: string, gapMs: number): Promise<{ received: string; closedByRouter: boolean; ms: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    let received = '';
    let replied = false;
    import('node:net').then(({ default: net }) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.setEncoding('latin1');
      let i = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const give = (): void => {
        if (socket.destroyed || i >= text.length) return;
        socket.write(text[i++]!, 'latin1');
        timer = setTimeout(give, gapMs);
      };
      socket.on('connect', give);
      socket.on('data', (d: string) => {
        received += d;
        if (!replied && received.includes('\n')) {
          replied = true;
          socket.write('200 result=0\n');
        }
      });
      socket.on('error', () => {});
      const giveUp = setTimeout(() => socket.destroy(), 60_000);
      socket.on('close', () => {
        clearTimeout(timer);
        clearTimeout(giveUp);
        resolve({ received, closedByRouter: true, ms: performance.now() - started });
      });
    });
  });
}

interface IdleFigures {
  connected: number;
  failed: number;
  closedByRouter: number;
  closedByUs: number;
  maxOpen: number;
  bytesReceived: number;
  errors: Record<string, number>;
}

function idleFloodHeld(
  port: number,
  count: number,
  inFlight: number,
  holdMs: number,
): { allConnected: Promise<void>; release: () => void; done: Promise<IdleFigures> } {
  const child = spawn('bash', ['-c', `ulimit -n ${count + 5000} && exec "$0" "$@"`, process.execPath, IDLE_WORKER, String(port), String(count), String(inFlight), String(holdMs)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let connected!: () => void;
  const allConnected = new Promise<void>((r) => (connected = r));
  const done = new Promise<IdleFigures>((resolve, reject) => {
    let figures: IdleFigures | undefined;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as IdleFigures & { done?: boolean };
      if (parsed.done) figures = parsed;
      else connected();
    });
    child.on('close', (code) => (figures && code === 0 ? resolve(figures) : reject(new Error(`idle worker exited ${code}: ${stderr}`))));
  });
  return { allConnected, release: () => child.stdin!.end(), done };
}

function idleFlood(port: number, count: number, inFlight: number, holdMs: number): Promise<IdleFigures> {
  return idleFloodHeld(port, count, inFlight, holdMs).done;
}
