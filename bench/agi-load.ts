/**
 * The FastAGI load generator for bench/routing.ts: Asterisk's side of the
 * protocol, in a child process of its own (forked with an IPC channel), so
 * that one generator with the same settings drives every target in turn.
 *
 * Each session is what res_agi.c does for `AGI(agi://...)`: connect, write the
 * full environment in setup_env() order (test/support/fake-asterisk.ts),
 * read the router's command line, reply `200 result=0` (one session in
 * `hangupEvery` first sends a bare `HANGUP` line, as Asterisk does when the
 * caller hangs up meanwhile), and wait for the router to close. A closed loop
 * of `concurrency` sessions: each starts the next one when it closes.
 *
 * Messages: the parent sends `{ type: 'run', ... }` and gets back a
 * `RunResult`; `{ type: 'exit' }` ends the process.
 */
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { readFileSync } from 'node:fs';
import { latencySummary } from './benchmark.js';
import { ASTERISK_ENVIRONMENT } from '../test/support/fake-asterisk.js';

export interface RunRequest {
  type: 'run';
  port: number;
  durationMs: number;
  concurrency: number;
  /** Every n-th session sends `HANGUP` before its `200`; 0: never. */
  hangupEvery: number;
}

export interface RunResult {
  type: 'result';
  /** Sessions that closed inside the window, answered as Asterisk expects. */
  sessions: number;
  windowMs: number;
  perSecond: number;
  /** Whole session, connect to close, µs: percentiles of the sessions in the window. */
  latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  /** VNUM_STATUS values seen in the router's answers. */
  statuses: Record<string, number>;
  /** Sessions that ended any other way (no command, not an MSet, socket error). */
  failures: number;
  failureSamples: string[];
}

type Key = [caller: string, dialled: string];

/** The environment split around the per-call values, built once. */
function environmentTemplate(port: number): (uniqueId: string, caller: string, dialled: string) => string {
  const parts: string[] = [];
  let text = '';
  const holes: Record<string, number> = { agi_uniqueid: 0, agi_callerid: 1, agi_dnid: 2, agi_extension: 2 };
  const order: number[] = [];
  for (const [name, value] of ASTERISK_ENVIRONMENT) {
    const hole = holes[name];
    if (hole === undefined) {
      text += `${name}: ${name === 'agi_request' ? `agi://127.0.0.1:${port}/route` : value}\n`;
      continue;
    }
    text += `${name}: `;
    parts.push(text);
    order.push(hole);
    text = '\n';
  }
  parts.push(`${text}\n`);
  return (uniqueId, caller, dialled) => {
    const values = [uniqueId, caller, dialled];
    let out = parts[0]!;
    for (let i = 0; i < order.length; i++) out += values[order[i]!]! + parts[i + 1]!;
    return out;
  };
}

async function run(request: RunRequest, keys: readonly Key[]): Promise<RunResult> {
  const environment = environmentTemplate(request.port);
  const latencies = new Float64Array(Math.max(1024, Math.ceil((request.durationMs / 1000) * 60_000)));
  let counted = 0;
  let sessions = 0;
  let failures = 0;
  const failureSamples: string[] = [];
  const statuses: Record<string, number> = {};
  let started = 0;
  let inFlight = 0;
  let running = true;
  const windowStart = performance.now();
  const windowEnd = windowStart + request.durationMs;
  let drained: () => void = () => {};
  const allClosed = new Promise<void>((resolve) => (drained = resolve));

  const fail = (why: string): void => {
    failures++;
    if (failureSamples.length < 5) failureSamples.push(why);
  };

  const startSession = (): void => {
    const n = started++;
    const key = keys[n % keys.length]!;
    const hangup = request.hangupEvery > 0 && n % request.hangupEvery === request.hangupEvery - 1;
    const begun = performance.now();
    inFlight++;
    let command: string | undefined;
    let buffered = '';
    let error: string | undefined;
    const socket = net.connect(request.port, '127.0.0.1');
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('connect', () => {
      socket.write(environment(`1732526400.${n}`, key[0], key[1]));
    });
    socket.on('data', (chunk: string) => {
      if (command !== undefined) {
        error ??= `data after the command: ${JSON.stringify(chunk.slice(0, 60))}`;
        return;
      }
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      command = buffered.slice(0, nl);
      socket.write(hangup ? 'HANGUP\n200 result=0\n' : '200 result=0\n');
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error ??= e.code ?? e.message;
    });
    socket.on('close', () => {
      inFlight--;
      const ended = performance.now();
      const match = command === undefined ? null : /^EXEC MSet "VNUM_STATUS=([A-Z_]+),/.exec(command);
      if (ended <= windowEnd) {
        if (error !== undefined) fail(error);
        else if (command === undefined) fail('closed without a command');
        else if (match === null) fail(`not an MSet: ${command.slice(0, 60)}`);
        else {
          sessions++;
          statuses[match[1]!] = (statuses[match[1]!] ?? 0) + 1;
          if (counted < latencies.length) latencies[counted++] = (ended - begun) * 1000;
        }
      }
      if (running && ended < windowEnd) startSession();
      else {
        running = false;
        if (inFlight === 0) drained();
      }
    });
  };

  for (let i = 0; i < request.concurrency; i++) startSession();
  await allClosed;
  const sorted = latencies.subarray(0, counted).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    type: 'result',
    sessions,
    windowMs: request.durationMs,
    perSecond: sessions / (request.durationMs / 1000),
    latencyUs: { ...latencySummary(sorted), mean: counted > 0 ? sum / counted : Number.NaN },
    statuses,
    failures,
    failureSamples,
  };
}

// Forked by bench/routing.ts: argv[2] is a JSON file of [caller, dialled] pairs.
if (process.send !== undefined && process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const keys = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Key[];
  process.on('message', (message: RunRequest | { type: 'exit' }) => {
    if (message.type === 'exit') {
      process.disconnect();
      return;
    }
    run(message, keys).then(
      (result) => process.send!(result),
      (error: unknown) => process.send!({ type: 'error', message: String(error) }),
    );
  });
  process.send({ type: 'ready' });
}
