import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createApiKey } from '../src/access/api-keys.js';
import { openDb, type Db } from '../src/store/db.js';
import type { PgTarget } from '../src/replica/stream.js';
import { pgBlocker } from '../test/support/cluster/pg.js';
import { VNUM_BIN } from '../test/support/cli.js';
import { cpuSecondsOf } from '../test/support/proc.js';
import { medianRound, startApi, startHttpLoad, type HttpLoad } from './api.js';
import { withSeededAuthority, type SeededAuthority } from './authority-seed.js';
import { formatCount, type Benchmark, type BenchContext, type Figure } from './benchmark.js';
import type { HttpRunResult } from './http-load.js';
import { median } from './routing.js';
import type { SeededStore } from './seed.js';
import { stopProcess } from './processes.js';

/**
 * Issue 15: session creates per second through the HTTP API in cluster mode
 * (two `vnum api --authority` processes on one PostgreSQL 15) against the
 * single box's `vnum api` on its SQLite file, on the same machine, in one
 * run, over the same 1,000,000 live sessions (bench/seed.ts's store, copied
 * into PostgreSQL row for row: bench/authority-seed.ts).
 *
 * Both sides get the same clients: two HTTP load generators (bench/http-load.ts,
 * new orders for seeded agents, 80% new customers), each with half the
 * connections; on the cluster side each generator drives its own API
 * instance, on the single box both drive the one API. Rounds alternate
 * (single box, cluster; cluster, single box; ...). The single box's phase
 * ends with its checkpoint, as in bench/api.ts; PostgreSQL runs with fsync,
 * full_page_writes and synchronous_commit on (its defaults: every
 * acknowledged create is on disk), its checkpoints in the background.
 *
 * Everything runs on one machine here: PostgreSQL, which in a deployment has
 * a host of its own, shares the cores with the APIs and the generators, so
 * beside the rates each run reports CPU per create of the API processes, of
 * PostgreSQL (the postmaster and its backends, from /proc) and of the
 * generators.
 */

const POOL_SIZE = 1000;
const TARGET_RATIO = 1;

const SIZES = {
  full: { sessions: 1_000_000, rounds: 5, roundMs: 5_000, warmupMs: 2_000, connections: 16, copyBatch: 20_000 },
  smoke: { sessions: 2_000, rounds: 1, roundMs: 1_000, warmupMs: 1_000, connections: 4, copyBatch: 1_000 },
};
type Sizes = (typeof SIZES)['full'];

export const apiClusterBenchmark: Benchmark = {
  name: 'api-cluster',
  description: 'session creates/s through two vnum api --authority on PostgreSQL against the single box vnum api on SQLite, same 1,000,000 sessions, same machine',
  async run(context) {
    const blocker = pgBlocker();
    if (blocker) return { figures: [], skipped: blocker };
    const sizes = context.smoke ? SIZES.smoke : SIZES.full;
    const settings = { fsync: 'on', full_page_writes: 'on', synchronous_commit: 'on', checkpoint_timeout: '5min', max_wal_size: '1GB' };
    const figures = await withSeededAuthority(context, { sessions: sizes.sessions, poolSize: POOL_SIZE, copyBatch: sizes.copyBatch, settings }, (seeded) =>
      measure(context, sizes, seeded),
    );
    return { figures };
  },
};

interface Side {
  name: 'single' | 'cluster';
  apis: ChildProcess[];
  ports: number[];
  token: string;
}

interface Run {
  /** Creates acknowledged (201) per second over the phase (the single box's includes its checkpoint). */
  rate: number;
  created: number;
  p99Us: number;
  /** CPU per create, µs: the API processes together, PostgreSQL's processes, the generators. */
  apiUs: number;
  pgUs: number;
  generatorUs: number;
}

async function measure(context: BenchContext, sizes: Sizes, { store, cluster, target, client, load }: SeededAuthority): Promise<Figure[]> {
  const db = openDb(store.path);
  const children: ChildProcess[] = [];
  try {
    await client.query('CHECKPOINT');

    const generators: HttpLoad[] = [];
    for (let i = 0; i < 2; i++) {
      const g = await startHttpLoad();
      generators.push(g);
      children.push(g.child);
    }
    const singleApi = await startApi(store.path);
    children.push(singleApi.child);
    const single: Side = { name: 'single', apis: [singleApi.child], ports: [singleApi.port, singleApi.port], token: createApiKey(db, { name: 'bench', scopes: ['admin'], now: Date.now() }).token };
    const url = authorityUrl(target);
    const clusterApis = [await startApi(join(store.path, '..', 'unused-a.db'), ['--authority', url]), await startApi(join(store.path, '..', 'unused-b.db'), ['--authority', url])];
    children.push(...clusterApis.map((a) => a.child));
    const clusterSide: Side = { name: 'cluster', apis: clusterApis.map((a) => a.child), ports: clusterApis.map((a) => a.port), token: pgApiKey(url) };
    const postmaster = Number(readFileSync(join(cluster.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);

    const state = { customers: store.customers, runs: 0 };
    const phase = (side: Side, durationMs: number): Promise<Run> => createPhase(side, durationMs, sizes, store, generators, db, postmaster, state);
    context.log('warm-up: creates through both');
    await phase(single, sizes.warmupMs);
    await phase(clusterSide, sizes.warmupMs);

    const rounds: Array<Record<'single' | 'cluster', Run>> = [];
    for (let round = 0; round < sizes.rounds; round++) {
      const order = round % 2 === 0 ? [single, clusterSide] : [clusterSide, single];
      const r = {} as Record<'single' | 'cluster', Run>;
      for (const side of order) r[side.name] = await phase(side, sizes.roundMs);
      rounds.push(r);
      load.push(loadavg()[0]!);
      const one = (x: Run): string =>
        `${formatCount(x.rate)}/s (p99 ${(x.p99Us / 1000).toFixed(1)} ms; CPU per create API ${x.apiUs.toFixed(0)} µs, PostgreSQL ${x.pgUs.toFixed(0)} µs, generators ${x.generatorUs.toFixed(0)} µs)`;
      context.log(`round ${round + 1} (${order.map((s) => s.name).join(', ')}): single box ${one(r.single)}; cluster ${one(r.cluster)}; ratio ${(r.cluster.rate / r.single.rate).toFixed(2)}; load ${load.at(-1)!.toFixed(2)}`);
    }
    for (const child of children) await stopProcess(child);
    // What each create's PIN purge walks: the PINs stored on a pool number (docs/benchmarks.md, api-cluster).
    const pinsSql = 'SELECT count(*) AS pins, count(DISTINCT dialled) AS numbers, coalesce(max(n), 0) AS busiest FROM (SELECT dialled, count(*) OVER (PARTITION BY dialled) AS n FROM pin) p';
    const local = db.prepare<[], PinSpread>(pinsSql).get()!;
    const remote = (await client.query<Record<keyof PinSpread, string>>(pinsSql)).rows[0]!;
    const pins = { single: local, cluster: { pins: Number(remote.pins), numbers: Number(remote.numbers), busiest: Number(remote.busiest) } };
    context.log(`PINs stored: single box ${JSON.stringify(pins.single)}, authority ${JSON.stringify(pins.cluster)}`);
    return figuresOf(store, sizes, rounds, load, pins);
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    db.close();
  }
}

function authorityUrl(target: PgTarget): string {
  return `postgres://${target.user}@${target.host}:${target.port}/${target.database}`;
}

/** A key on the authority, made as an operator makes it: `vnum apikey create --authority`. */
function pgApiKey(url: string): string {
  const run = spawnSync(process.execPath, [VNUM_BIN, 'apikey', 'create', '--name', 'bench', '--scope', 'admin', '--json', '--authority', url], {
    encoding: 'utf8',
    env: { ...process.env, VNUM_LOG_LEVEL: 'error' },
    timeout: 60_000,
  });
  if (run.status !== 0) throw new Error(`vnum apikey create --authority failed (${run.status}): ${run.stderr}`);
  return (JSON.parse(run.stdout) as { key: string }).key;
}

/** User + system CPU seconds of a process and all its children (PostgreSQL's postmaster and backends). */
function treeCpuSeconds(root: number): number {
  let total = cpuSecondsOf(root) ?? 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === root) total += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

async function createPhase(
  side: Side,
  durationMs: number,
  sizes: Sizes,
  store: SeededStore,
  generators: HttpLoad[],
  db: Db,
  postmaster: number,
  state: { customers: number; runs: number },
): Promise<Run> {
  const cpu = (): number[] => [
    side.apis.reduce((n, c) => n + (cpuSecondsOf(c.pid!) ?? Number.NaN), 0),
    treeCpuSeconds(postmaster),
    generators.reduce((n, g) => n + (cpuSecondsOf(g.child.pid!) ?? Number.NaN), 0),
  ];
  const before = cpu();
  const started = performance.now();
  // Customers: each generator its own range, past every one used before.
  const results = await Promise.all(
    generators.map((g, i) =>
      g.run({
        port: side.ports[i % side.ports.length]!,
        durationMs,
        concurrency: sizes.connections / generators.length,
        kind: 'create',
        key: side.token,
        prefix: `${side.name}-${state.runs}-${i}`,
        sessions: store.sessions,
        agents: store.agents,
        customersFrom: state.customers + i * 1_000_000,
        seed: state.runs * 10 + i + 1,
      }),
    ),
  );
  state.runs++;
  state.customers += generators.length * 1_000_000;
  // The single box's writes reach its file at the checkpoint: the phase pays for it, as in bench/api.ts.
  if (side.name === 'single') db.pragma('wal_checkpoint(PASSIVE)');
  const seconds = (performance.now() - started) / 1000;
  const after = cpu();
  for (const r of results) assertCreates(side, r);
  const created = results.reduce((n, r) => n + (r.statuses['201'] ?? 0), 0);
  const per = (i: number): number => ((after[i]! - before[i]!) * 1e6) / created;
  return { rate: created / seconds, created, p99Us: Math.max(...results.map((r) => r.latencyUs.p99)), apiUs: per(0), pgUs: per(1), generatorUs: per(2) };
}

function assertCreates(side: Side, result: HttpRunResult): void {
  const unexpected = Object.keys(result.statuses).filter((status) => status !== '201');
  if (result.failures > 0 || unexpected.length > 0 || (result.statuses['201'] ?? 0) === 0) {
    throw new Error(`${side.name}: ${JSON.stringify(result.statuses)}, ${result.failures} failures ${result.failureSamples.join('; ')}`);
  }
}

interface PinSpread {
  pins: number;
  numbers: number;
  busiest: number;
}

function figuresOf(
  store: SeededStore,
  sizes: Sizes,
  rounds: Array<Record<'single' | 'cluster', Run>>,
  load: number[],
  pins: Record<'single' | 'cluster', PinSpread>,
): Figure[] {
  const list = (pick: (r: Record<'single' | 'cluster', Run>) => number, digits = 0): string =>
    rounds.map((r) => pick(r).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })).join(' · ');
  const middle = medianRound(rounds, (r) => r.cluster.rate / r.single.rate);
  const ratio = middle.cluster.rate / middle.single.rate;
  const setting =
    `${formatCount(store.sessions)} live sessions, ${formatCount(POOL_SIZE)} numbers, the same rows on both; ${sizes.connections} keep-alive connections from 2 generators, ` +
    `${rounds.length} × ${sizes.roundMs / 1000} s per side alternating; PostgreSQL 15 on the same 2 cores (fsync, synchronous_commit on); ` +
    `load average (1 min) ${load.map((l) => l.toFixed(1)).join(' · ')}; ` +
    `PINs stored at the end, single box ${formatCount(pins.single.pins)} on ${pins.single.numbers} numbers (busiest ${formatCount(pins.single.busiest)}), ` +
    `authority ${formatCount(pins.cluster.pins)} on ${pins.cluster.numbers} (busiest ${formatCount(pins.cluster.busiest)})`;
  const total = (r: Run): number => r.apiUs + r.pgUs;
  return [
    {
      name: 'session creates/s through two vnum api --authority on PostgreSQL, the round with the median ratio',
      unit: '/s',
      value: middle.cluster.rate,
      baseline: { name: "the single box's vnum api on SQLite, same round (its checkpoint included)", value: middle.single.rate },
      target: { text: `≥ ${TARGET_RATIO}× the single box`, met: ratio >= TARGET_RATIO },
      size:
        `${setting}; per round cluster ${list((r) => r.cluster.rate)}/s, single box ${list((r) => r.single.rate)}/s, ratio ${list((r) => r.cluster.rate / r.single.rate, 2)}; ` +
        `create p99 cluster ${list((r) => r.cluster.p99Us / 1000, 1)} ms, single box ${list((r) => r.single.p99Us / 1000, 1)} ms`,
    },
    {
      name: 'CPU per create in cluster mode (both API processes + PostgreSQL), median of rounds',
      unit: 'µs',
      value: median(rounds.map((r) => total(r.cluster))),
      baseline: { name: "the single box's vnum api per create (the store is in it)", value: median(rounds.map((r) => r.single.apiUs)) },
      size:
        `${setting}; per round cluster API ${list((r) => r.cluster.apiUs)} µs + PostgreSQL ${list((r) => r.cluster.pgUs)} µs, single box API ${list((r) => r.single.apiUs)} µs ` +
        `(PostgreSQL meanwhile ${list((r) => r.single.pgUs)} µs); generators ${list((r) => r.cluster.generatorUs)} / ${list((r) => r.single.generatorUs)} µs per create (cluster / single box)`,
    },
  ];
}
