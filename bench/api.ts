import { fork, spawn, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApiKey } from '../src/access/api-keys.js';
import { parseNumber } from '../src/numbers/normalise.js';
import { createSession, getSession, type PartyInput } from '../src/session/sessions.js';
import { openDb, type Db } from '../src/store/db.js';
import { elapsedMicros, formatCount, percentile, type Benchmark, type BenchContext, type Figure } from './benchmark.js';
import type { HttpRunRequest, HttpRunResult } from './http-load.js';
import { VNUM_BIN } from '../test/support/cli.js';
import { freePort } from '../test/support/net.js';
import { cpuSecondsOf } from '../test/support/proc.js';
import { startVnum, stopProcess, takeDecisions } from './processes.js';
import { check, concatenate, median, nextMessage, startGenerator, writeKeys, type Generator, type KeyMix } from './routing.js';
import type { RunResult } from './agi-load.js';
import { agentNumber, customerNumber, orderId, prng, seedStore, type SeededStore } from './seed.js';

/**
 * Issue 13's API figures, each beside a baseline from the same run, on one
 * store of 1,000,000 live sessions that `vnum api` and `vnum serve` (the
 * built CLI, each its own process, as an operator runs them) share:
 *
 *   1. session creates/s through the API at the highest rate the load
 *      generator can drive (closed loop, keep-alive connections), against
 *      the in-process createSession rate on the same file, in alternating
 *      rounds; each phase pays its own checkpoint;
 *   2. while the API creates at that rate, the router's FastAGI throughput
 *      and its decision p99 (timed inside vnum serve, as the routing
 *      benchmark does) against the router alone, alternating rounds;
 *   3. the same while a flood of requests with bad keys hits the API;
 *   4. API read latency for a session by id (one connection, so latency and
 *      not queueing) against an in-process getSession on the same file.
 *
 * The API runs with the rate limit raised past what one address can reach
 * (it is a policy per client address; the figure is the API's capacity);
 * the bad-key counter runs as shipped. Creates are measured with the API at
 * the bench's own priority, as its in-process baseline runs. Beside the
 * router, the API runs at the priority its systemd unit gives it (Nice=5,
 * deploy/systemd/vnum-api.service: the router comes first when the CPU runs
 * short), and so does the HTTP load generator, the stand-in for order
 * systems and attackers on other hosts; vnum serve and the FastAGI
 * generator (Asterisk's stand-in, which shares the PBX host) run at the
 * normal priority. On a 2-core machine all four share two cores: CPU per
 * request and per routed call is reported beside each rate, and the
 * router's share of a core, which is where a slower router's time went.
 */

const POOL_SIZE = 1000;
const CREATES_RATIO_TARGET = 0.8;
const ROUTER_THROUGHPUT_TARGET = 0.9;
const ROUTER_P99_TARGET = 2;
const HANGUP_EVERY = 20;
/** The HTTP load starts this long before the FastAGI round and ends this long after it. */
const OVERLAP_MS = 300;

const HTTP_LOAD = fileURLToPath(new URL('./http-load.js', import.meta.url));
/** Nice=5 in deploy/systemd/vnum-api.service. */
const API_NICE = 5;

const SIZES = {
  full: { sessions: 1_000_000, keys: 50_000, rounds: 5, roundMs: 5_000, warmupMs: 2_000, httpConcurrency: 16, agiConcurrency: 50, reads: 20_000 },
  // Windows long enough for a cold API on a loaded machine to answer at all.
  smoke: { sessions: 2_000, keys: 1_000, rounds: 1, roundMs: 1_000, warmupMs: 1_000, httpConcurrency: 4, agiConcurrency: 10, reads: 200 },
};
type Sizes = (typeof SIZES)['full'];

export const apiBenchmark: Benchmark = {
  name: 'api',
  description:
    'vnum api over 1,000,000 sessions: creates/s against in-process creates; vnum serve\'s throughput and decision p99 while the API creates, and under a flood of bad keys; read p99 by id',
  async run(context) {
    const sizes = context.smoke ? SIZES.smoke : SIZES.full;
    context.log(`seeding ${formatCount(sizes.sessions)} sessions`);
    const store = seedStore(join(context.workDir, 'api.db'), { sessions: sizes.sessions, poolSize: POOL_SIZE, log: context.log });
    context.log(`seeded in ${(store.seedMs / 1000).toFixed(1)} s`);
    const db = openDb(store.path);
    const token = createApiKey(db, { name: 'bench', scopes: ['admin'], now: Date.now() }).token;
    const keysFile = join(context.workDir, 'keys.json');
    const mix = writeKeys(store, sizes.keys, keysFile);
    const children: ChildProcess[] = [];
    try {
      const http = await startHttpLoad();
      children.push(http.child);
      const agi = await startGenerator(keysFile);
      children.push(agi.child);
      const serve = await startVnum(store.path, { timeDecisions: true });
      children.push(serve.child);
      const api = await startApi(store.path);
      children.push(api.child);
      const bench: Bench = { context, sizes, store, db, token, http, agi, mix, serve, api, customers: store.customers, runs: 0 };

      const figures = [...(await measureCreates(bench)), ...(await measureReads(bench))];
      // From here on, as deployed: the API (and the remote clients' stand-in) below the router.
      for (const pid of [api.child.pid!, http.child.pid!]) setPriority(pid, API_NICE);
      figures.push(
        ...(await measureRouterBeside(bench, 'create')),
        // Last: the bad-key counter then refuses this address for a minute, as it is meant to.
        ...(await measureRouterBeside(bench, 'bad-key')),
      );
      await stopProcess(api.child);
      await stopProcess(serve.child, 'SIGTERM');
      http.child.send({ type: 'exit' });
      agi.child.send({ type: 'exit' });
      return { figures };
    } finally {
      db.close();
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  },
};

export interface HttpLoad {
  child: ChildProcess;
  run(request: Omit<HttpRunRequest, 'type'>): Promise<HttpRunResult>;
}

interface Bench {
  context: BenchContext;
  sizes: Sizes;
  store: SeededStore;
  /** The bench's own connection: in-process creates and reads, checkpoints. */
  db: Db;
  token: string;
  http: HttpLoad;
  agi: Generator;
  mix: KeyMix;
  serve: { child: ChildProcess; port: number };
  api: { child: ChildProcess; port: number };
  /** New customers are numbered from here: past every one used so far. */
  customers: number;
  runs: number;
}

export async function startHttpLoad(): Promise<HttpLoad> {
  const child = fork(HTTP_LOAD, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await nextMessage<{ type: 'ready' }>(child, 'the HTTP load generator');
  return {
    child,
    async run(request) {
      const answer = nextMessage<HttpRunResult | { type: 'error'; message: string }>(child, 'the HTTP load generator');
      child.send({ type: 'run', ...request });
      const result = await answer;
      if (result.type === 'error') throw new Error(`HTTP load generator: ${result.message}`);
      return result;
    },
  };
}

/** The built CLI's `vnum api`, as an operator runs it, once its log says it serves; `args`: more of its settings (e.g. --authority). */
export async function startApi(dbPath: string, args: string[] = []): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, [VNUM_BIN, '--db', dbPath, 'api', '--host', '127.0.0.1', '--port', String(port), '--rate-limit', '1000000', ...args], {
    env: { ...process.env, VNUM_DEFAULT_COUNTRY: 'GB', VNUM_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vnum api did not start in 30 s: ${log}`)), 30_000);
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      log = (log + chunk).slice(-20_000);
      if (log.includes('"msg":"vnum api serving this store"')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`vnum api exited (${code}): ${log}`));
    });
  });
  return { child, port };
}

/** One run of the HTTP generator against the API; every answer must be the one its kind expects. */
async function httpRun(b: Bench, kind: HttpRunRequest['kind'], durationMs: number, concurrency: number): Promise<HttpRunResult> {
  const result = await b.http.run({
    port: b.api.port,
    durationMs,
    concurrency,
    kind,
    key: b.token,
    prefix: `api-${b.runs++}`,
    sessions: b.store.sessions,
    agents: b.store.agents,
    customersFrom: b.customers,
    seed: b.runs,
  });
  b.customers += result.customersUsed;
  const allowed = { create: ['201'], read: ['200'], 'bad-key': ['401', '429'] }[kind];
  const unexpected = Object.keys(result.statuses).filter((status) => !allowed.includes(status));
  if (result.failures > 0 || unexpected.length > 0 || result.requests === 0) {
    throw new Error(`${kind}: ${JSON.stringify(result.statuses)}, ${result.failures} failures ${result.failureSamples.join('; ')}`);
  }
  return result;
}

const party = (number: string): PartyInput => {
  const parsed = parseNumber(number);
  return { number: parsed.e164, type: parsed.type };
};

/** createSession in this process for `durationMs`, new orders shaped as the generator's; then its checkpoint. Creates per second. */
function inProcessCreates(b: Bench, durationMs: number, tag: string): number {
  const random = prng(1000 + b.runs++);
  const started = performance.now();
  let n = 0;
  while (performance.now() - started < durationMs) {
    const customer = random() < 0.2 ? Math.floor(random() * b.customers) : b.customers++;
    createSession(b.db, {
      id: `${tag}-${n++}`,
      first: party(customerNumber(customer)),
      second: party(agentNumber(Math.floor(random() * b.store.agents))),
      now: Date.now(),
    });
  }
  b.db.pragma('wal_checkpoint(PASSIVE)');
  return n / ((performance.now() - started) / 1000);
}

/** The API's creates for `durationMs`, then the checkpoint of what it wrote (timed here, as the in-process phase's is). */
async function apiCreates(b: Bench, durationMs: number): Promise<{ rate: number; result: HttpRunResult; cpuUs: number; generatorCpuUs: number }> {
  const [api0, gen0] = [cpu(b.api.child), cpu(b.http.child)];
  const result = await httpRun(b, 'create', durationMs, b.sizes.httpConcurrency);
  const [api1, gen1] = [cpu(b.api.child), cpu(b.http.child)];
  const checkpointStarted = performance.now();
  b.db.pragma('wal_checkpoint(PASSIVE)');
  const checkpointMs = performance.now() - checkpointStarted;
  const created = result.statuses['201'] ?? 0;
  return {
    rate: created / ((durationMs + checkpointMs) / 1000),
    result,
    cpuUs: ((api1 - api0) * 1e6) / created,
    generatorCpuUs: ((gen1 - gen0) * 1e6) / created,
  };
}

async function measureCreates(b: Bench): Promise<Figure[]> {
  const { sizes, context } = b;
  context.log(`warm-up: creates through the API and in-process`);
  await apiCreates(b, sizes.warmupMs);
  inProcessCreates(b, sizes.warmupMs / 4, 'warm');
  const rounds: Array<{ api: number; inProcess: number; cpuUs: number; generatorCpuUs: number; p99: number }> = [];
  for (let round = 0; round < sizes.rounds; round++) {
    const api = await apiCreates(b, sizes.roundMs);
    const inProcess = inProcessCreates(b, sizes.roundMs, `inproc-${round}`);
    rounds.push({ api: api.rate, inProcess, cpuUs: api.cpuUs, generatorCpuUs: api.generatorCpuUs, p99: api.result.latencyUs.p99 });
    context.log(
      `round ${round + 1}: API ${formatCount(api.rate)}/s (p99 ${formatCount(api.result.latencyUs.p99)} µs, API CPU ${api.cpuUs.toFixed(0)} µs/create, generator ${api.generatorCpuUs.toFixed(0)} µs), ` +
        `in-process ${formatCount(inProcess)}/s, ratio ${(api.rate / inProcess).toFixed(2)}`,
    );
  }
  const middle = medianRound(rounds, (r) => r.api / r.inProcess);
  const ratio = middle.api / middle.inProcess;
  const list = (pick: (r: (typeof rounds)[number]) => number, digits = 0) => rounds.map((r) => pick(r).toFixed(digits)).join(' · ');
  return [
    {
      name: `session creates/s through the API at ${formatCount(b.store.sessions)} live sessions, the round with the median ratio`,
      unit: '/s',
      value: middle.api,
      baseline: { name: 'createSession in-process on the same file, same round', value: middle.inProcess },
      target: { text: `≥ ${CREATES_RATIO_TARGET}× in-process`, met: ratio >= CREATES_RATIO_TARGET },
      size:
        `${formatCount(b.store.sessions)} live sessions, ${formatCount(POOL_SIZE)} numbers; ${sizes.httpConcurrency} keep-alive connections, ` +
        `${rounds.length} × ${sizes.roundMs / 1000} s per side alternating; per round API ${list((r) => r.api)}/s, in-process ${list((r) => r.inProcess)}/s, ` +
        `ratio ${list((r) => r.api / r.inProcess, 2)}; API CPU ${list((r) => r.cpuUs)} µs/create, generator ${list((r) => r.generatorCpuUs)} µs/create; ` +
        `create p99 through the API ${list((r) => r.p99 / 1000, 1)} ms`,
    },
  ];
}

/** The round whose ratio is the median (an odd number of rounds makes it a real round). */
export function medianRound<T>(rounds: T[], ratio: (r: T) => number): T {
  return [...rounds].sort((a, c) => ratio(a) - ratio(c))[Math.floor((rounds.length - 1) / 2)]!;
}

/** One FastAGI round against vnum serve, with the router's CPU: per routed call, and its share of a core over the round. */
async function agiRound(
  b: Bench,
): Promise<{ result: RunResult; decisions: Float64Array; cpuUsPerCall: number; coreShare: number; generatorShare: number }> {
  const [cpu0, gen0, t0] = [cpu(b.serve.child), cpu(b.agi.child), performance.now()];
  const result = await b.agi.run({ type: 'run', port: b.serve.port, durationMs: b.sizes.roundMs, concurrency: b.sizes.agiConcurrency, hangupEvery: HANGUP_EVERY });
  const [cpu1, gen1, t1] = [cpu(b.serve.child), cpu(b.agi.child), performance.now()];
  check(result, b.mix, 'vnum serve');
  return {
    result,
    decisions: await takeDecisions(b.serve.child),
    cpuUsPerCall: ((cpu1 - cpu0) * 1e6) / Math.max(1, result.sessions),
    coreShare: ((cpu1 - cpu0) * 1000) / (t1 - t0),
    generatorShare: ((gen1 - gen0) * 1000) / (t1 - t0),
  };
}

/** CPU seconds a live child has used (user + system). */
function cpu(child: ChildProcess): number {
  const seconds = cpuSecondsOf(child.pid!);
  if (seconds === undefined) throw new Error(`process ${child.pid} is gone`);
  return seconds;
}

/** The router alone, then beside the API under `load`, round after round. */
async function measureRouterBeside(b: Bench, load: 'create' | 'bad-key'): Promise<Figure[]> {
  const { sizes, context } = b;
  const what = load === 'create' ? 'the API creating at its highest rate' : 'a flood of requests with bad keys at the API';
  context.log(`vnum serve alone, and beside ${what}`);
  await b.agi.run({ type: 'run', port: b.serve.port, durationMs: sizes.warmupMs, concurrency: sizes.agiConcurrency, hangupEvery: HANGUP_EVERY });
  await takeDecisions(b.serve.child);
  const rounds: Array<{ alone: RunResult; beside: RunResult; httpRate: number; cpu: { alone: number; beside: number }; share: { alone: number; beside: number }; generator: { alone: number; beside: number } }> = [];
  const alone: Float64Array[] = [];
  const beside: Float64Array[] = [];
  for (let round = 0; round < sizes.rounds; round++) {
    const a = await agiRound(b);
    alone.push(a.decisions);
    const http = httpRun(b, load, sizes.roundMs + 2 * OVERLAP_MS, sizes.httpConcurrency);
    await new Promise((resolve) => setTimeout(resolve, OVERLAP_MS));
    const c = await agiRound(b);
    beside.push(c.decisions);
    const httpResult = await http;
    rounds.push({
      alone: a.result,
      beside: c.result,
      httpRate: httpResult.perSecond,
      cpu: { alone: a.cpuUsPerCall, beside: c.cpuUsPerCall },
      share: { alone: a.coreShare, beside: c.coreShare },
      generator: { alone: a.generatorShare, beside: c.generatorShare },
    });
    context.log(
      `round ${round + 1}: alone ${formatCount(a.result.perSecond)}/s, beside ${formatCount(c.result.perSecond)}/s ` +
        `(ratio ${(c.result.perSecond / a.result.perSecond).toFixed(2)}); decision p99 alone ${percentile(a.decisions.sort(), 99).toFixed(0)} µs, ` +
        `beside ${percentile(c.decisions.sort(), 99).toFixed(0)} µs; router CPU ${a.cpuUsPerCall.toFixed(0)} vs ${c.cpuUsPerCall.toFixed(0)} µs/call, ` +
        `${(a.coreShare * 100).toFixed(0)}% vs ${(c.coreShare * 100).toFixed(0)}% of a core (FastAGI generator ${(a.generatorShare * 100).toFixed(0)}% vs ${(c.generatorShare * 100).toFixed(0)}%); API ${formatCount(httpResult.perSecond)} requests/s ${JSON.stringify(httpResult.statuses)}`,
    );
  }
  const middle = medianRound(rounds, (r) => r.beside.perSecond / r.alone.perSecond);
  const throughput = middle.beside.perSecond / middle.alone.perSecond;
  const p99Alone = percentile(concatenate(alone), 99);
  const p99Beside = percentile(concatenate(beside), 99);
  const list = (pick: (r: (typeof rounds)[number]) => number, digits = 0) => rounds.map((r) => pick(r).toFixed(digits)).join(' · ');
  const size =
    `${formatCount(b.store.sessions)} live sessions on the file both share; ${sizes.agiConcurrency} concurrent FastAGI sessions, ` +
    `${sizes.httpConcurrency} HTTP connections; ${rounds.length} × ${sizes.roundMs / 1000} s per side alternating; ` +
    `per round alone ${list((r) => r.alone.perSecond)}/s, beside ${list((r) => r.beside.perSecond)}/s; API ${list((r) => r.httpRate)} requests/s meanwhile; ` +
    `router CPU per call alone ${list((r) => r.cpu.alone)} µs, beside ${list((r) => r.cpu.beside)} µs; ` +
    `router's share of a core alone ${list((r) => r.share.alone * 100)}%, beside ${list((r) => r.share.beside * 100)}%; ` +
    `the FastAGI generator's alone ${list((r) => r.generator.alone * 100)}%, beside ${list((r) => r.generator.beside * 100)}%`;
  return [
    {
      name: `FastAGI sessions/s of vnum serve beside ${what}, the round with the median ratio`,
      unit: '/s',
      value: middle.beside.perSecond,
      baseline: { name: 'vnum serve alone in the same round', value: middle.alone.perSecond },
      target: { text: `≥ ${ROUTER_THROUGHPUT_TARGET}× alone`, met: throughput >= ROUTER_THROUGHPUT_TARGET },
      size,
    },
    {
      name: `routing decision p99 inside vnum serve beside ${what}`,
      unit: 'µs',
      value: p99Beside,
      baseline: { name: 'the same, vnum serve alone, same rounds', value: p99Alone },
      target: { text: `≤ ${ROUTER_P99_TARGET}× alone`, met: p99Beside <= ROUTER_P99_TARGET * p99Alone },
      size: `${size}; median per-round FastAGI latency p99 alone ${formatCount(median(rounds.map((r) => r.alone.latencyUs.p99)))} µs, beside ${formatCount(median(rounds.map((r) => r.beside.latencyUs.p99)))} µs`,
    },
  ];
}

async function measureReads(b: Bench): Promise<Figure[]> {
  const { sizes, context } = b;
  context.log('reads by id through the API, one connection, and in-process');
  await httpRun(b, 'read', sizes.warmupMs, 1);
  const result = await httpRun(b, 'read', sizes.roundMs, 1);
  const random = prng(17);
  const now = Date.now();
  const local = new Float64Array(sizes.reads);
  for (let i = 0; i < sizes.reads; i++) local[i] = elapsedMicros(() => getSession(b.db, orderId(1 + Math.floor(random() * b.store.sessions)), now));
  local.sort();
  return [50, 99].map((p) => ({
    name: `API read of a session by id (GET /v1/sessions/{id}) p${p} at ${formatCount(b.store.sessions)} sessions`,
    unit: 'µs',
    value: p === 50 ? result.latencyUs.p50 : result.latencyUs.p99,
    baseline: { name: `getSession in-process p${p}, same file`, value: percentile(local, p) },
    size: `${formatCount(result.requests)} reads of random seeded sessions over one keep-alive connection (request written to answer read), ${formatCount(sizes.reads)} in-process`,
  }));
}
