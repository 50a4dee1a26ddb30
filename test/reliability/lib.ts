/**
 * Shared pieces of the reliability campaign (docs/reliability.md): the built
 * `vnum serve` as a separate process, a raw FastAGI client that records
 * exactly what the router wrote, the router's memory from /proc, and the
 * campaign's sizes (defaults meet issue 5; larger runs through env vars).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { VNUM_BIN } from '../helpers/cli.js';

/** A whole number from the environment, else the default. */
export function sizeFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new Error(`${name} must be a whole number, got "${raw}"`);
  return Number(raw);
}


export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The router's memory in bytes: resident now and the peak so far (VmHWM). */
export function memoryOf(pid: number): { rss: number; peak: number } | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** CPU seconds (user + system) a process has used so far; Linux clock ticks are 1/100 s. */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

export interface Serve {
  child: ChildProcess;
  pid: number;
  port: number;
  /** Every line the router wrote to stderr so far (pino JSON). */
  lines(): string[];
  alive(): boolean;
  /** SIGTERM, then SIGKILL after 5 s; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface ServeOptions {
  db: string;
  args?: string[];
  env?: Record<string, string | undefined>;
  /** Run under `ulimit -n <n>` (the shell raises it; CI runs as root). */
  fdLimit?: number;
  /** Run under this umask, e.g. '000'. */
  umask?: string;
}

/** The built `vnum serve` on a free loopback port, started once it says so. */
export async function startServe(options: ServeOptions): Promise<Serve> {
  const port = await freePort();
  const argv = [...(process.env.VNUM_RELIABILITY_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', process.env.VNUM_RELIABILITY_PROFILE] : []), VNUM_BIN, '--db', options.db, 'serve', '--port', String(port), ...(options.args ?? [])];
  const env = Object.fromEntries(
    Object.entries({ ...process.env, VNUM_DEFAULT_COUNTRY: 'GB', VNUM_LOG_LEVEL: undefined, VNUM_LOG_REDACT: undefined, ...options.env }).filter(
      ([, v]) => v !== undefined,
    ),
  ) as NodeJS.ProcessEnv;
  const shell = [
    ...(options.umask !== undefined ? [`umask ${options.umask}`] : []),
    ...(options.fdLimit !== undefined ? [`ulimit -n ${options.fdLimit}`] : []),
  ];
  const child =
    shell.length === 0
      ? spawn(process.execPath, argv, { env, stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn('bash', ['-c', `${shell.join(' && ')} && exec "$0" "$@"`, process.execPath, ...argv], {
          env,
          stdio: ['ignore', 'ignore', 'pipe'],
        });
  let buffered = '';
  const lines: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 15_000;
  while (!lines.some((l) => l.includes('routing from this store'))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`vnum serve did not start: ${lines.join('\n')}${buffered}`);
    }
    await sleep(20);
  }
  return {
    child,
    pid: child.pid!,
    port,
    lines: () => (buffered ? [...lines, buffered] : lines),
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** One of the router's answers, as dialplan/vnum.conf reads it. */
export interface Answer {
  status: string;
  target: string;
  cli: string;
  session: string;
}

const MSET = /^EXEC MSet "VNUM_STATUS=(BRIDGE|NO_SESSION|ENDED|NOT_ALLOWED|NOT_POOL|INVALID|ERROR),VNUM_TARGET=([A-Za-z0-9+._:-]{0,64}),VNUM_CLI=([A-Za-z0-9+._:-]{0,64}),VNUM_SESSION=([A-Za-z0-9+._:-]{0,64})"$/;

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

/** What a well-behaved Asterisk sends for a call from `caller` to `dialled` (res_agi.c's order). */
export function callEnvironment(caller: string, dialled: string): string {
  return (
    [
      ['agi_network', 'yes'],
      ['agi_network_script', 'route'],
      ['agi_request', 'agi://127.0.0.1:4573/route'],
      ['agi_channel', 'PJSIP/carrier-00000001'],
      ['agi_language', 'en'],
      ['agi_type', 'PJSIP'],
      ['agi_uniqueid', '1732526400.17'],
      ['agi_version', '22.1.0'],
      ['agi_callerid', caller],
      ['agi_calleridname', 'unknown'],
      ['agi_callingpres', '0'],
      ['agi_callingani2', '0'],
      ['agi_callington', '0'],
      ['agi_callingtns', '0'],
      ['agi_dnid', dialled],
      ['agi_rdnis', 'unknown'],
      ['agi_context', 'vnum-inbound'],
      ['agi_extension', dialled],
      ['agi_priority', '2'],
      ['agi_enhanced', '0.0'],
      ['agi_accountcode', ''],
      ['agi_threadid', '139872662513344'],
    ]
      .map(([k, v]) => `${k}: ${v}\n`)
      .join('') + '\n'
  );
}

/** A whole call, as Asterisk makes it: the answer, or undefined when the router closed without a well-formed one. */
export async function routeCall(port: number, caller: string, dialled: string): Promise<{ answer: Answer | undefined; raw: Exchange }> {
  const raw = await exchange(port, { send: callEnvironment(caller, dialled), then: 'hold', timeoutMs: 10_000 });
  const lines = raw.received.split('\n');
  // Exactly one line, newline-terminated, and nothing after it.
  const answer = lines.length === 2 && lines[1] === '' ? parseAnswer(lines[0]!) : undefined;
  return { answer, raw };
}

/**
 * Where a real number appears in text, in any formatting a log or message
 * could give it: its last 9 digits, with up to two separators between digits.
 */
export function numberPattern(e164: string): RegExp {
  const digits = e164.replace(/\D/g, '').slice(-9);
  return new RegExp(digits.split('').join('[\\s().+-]{0,2}'));
}

/** A small seeded PRNG (mulberry32): every run is reproducible from its seed. The benchmarks' own, one copy. */
export { prng } from '../../bench/seed.js';
import { freePort } from '../../bench/processes.js';
export { freePort };

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
