import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { openDb, type Db } from '../src/store/db.js';
import { withSeededAuthority, type SeededAuthority } from './authority-seed.js';
import { readReplicaHealth, type ReplicaHealth } from '../src/replica/health.js';
import { storeBridgeLookup } from '../src/routing/lookup.js';
import type { E164 } from '../src/numbers/normalise.js';
import { pgBlocker } from '../test/support/cluster/pg.js';
import { VNUM_BIN } from '../test/support/cli.js';
import { cpuSecondsOf } from '../test/support/proc.js';
import { elapsedMicros, formatCount, percentile, type Benchmark, type BenchContext, type Figure } from './benchmark.js';
import { sampleBridgeKeys, type SeededStore } from './seed.js';
import type { RunResult } from './agi-load.js';
import { check, concatenate, median, startGenerator, writeKeys, type Generator, type KeyMix } from './routing.js';
import { startVnum, stopProcess, takeDecisions } from './processes.js';

/**
 * Issue 15: routing on a cluster node against routing on a single box, over
 * the same 1,000,000 sessions, in one run.
 *
 * The single box's file is the routing benchmark's store (bench/seed.ts).
 * The node's file is built the real way from the same rows: they are copied
 * into a private PostgreSQL 15 (the authority, cluster mode's schema from
 * src/store/pg/migrations.ts, in creation order, as an authority's heap
 * holds them), and the real `vnum replica` (the built CLI, its own process)
 * builds its file from the slot's snapshot and then follows the slot, writing
 * its health row every ping, throughout the measurement. Both files are then
 * served by the real `vnum serve`, the node's with `--when-stale
 * fail-closed`, so a call answered while the gate judged the replica stale
 * would be an ERROR, and the benchmark fails on any ERROR.
 *
 * One load generator (bench/agi-load.ts, the routing benchmark's workload and
 * keys, every answer checked) drives the two servers in alternating rounds
 * (single, node; node, single; ...), so a neighbour's burst lands on both and
 * neither always goes first. Measured per run: the decision inside each
 * vnum serve (the router's `vnum:route` trace, bench/decision-timing.ts:
 * route(), not the gate in front of it, whose cost is in the CPU figure),
 * user+system CPU of each server per FastAGI session, of the generator and
 * of `vnum replica`. Then the store lookup alone on each file, in one
 * process, call by call in turn, which tells a difference of the files apart
 * from a difference of the processes: with `vnum replica` following into
 * the node's file, twice with the same keys (the second pass finds what the
 * first read in the OS's cache), then with other keys once it has stopped.
 */

const POOL_SIZE = 1000;
const CONCURRENCY = 50;
const HANGUP_EVERY = 20;
const P99_TARGET_RATIO = 1.1;

const SIZES = {
  full: { sessions: 1_000_000, keys: 50_000, rounds: 6, roundMs: 5_000, warmupMs: 3_000, lookups: 100_000, copyBatch: 20_000 },
  smoke: { sessions: 10_000, keys: 2_000, rounds: 2, roundMs: 1_000, warmupMs: 300, lookups: 2_000, copyBatch: 2_000 },
};
type Sizes = (typeof SIZES)['full'];

export const replicaRoutingBenchmark: Benchmark = {
  name: 'replica-routing',
  description: 'routing decision and CPU of vnum serve on a node replica (built and followed by vnum replica, gate on) against a single box, same 1,000,000 sessions',
  async run(context) {
    const blocker = pgBlocker();
    if (blocker) return { figures: [], skipped: blocker };
    const sizes = context.smoke ? SIZES.smoke : SIZES.full;
    const settings = { fsync: 'on', full_page_writes: 'on', max_slot_wal_keep_size: '1GB', wal_sender_timeout: '60s' };
    const figures = await withSeededAuthority(context, { sessions: sizes.sessions, poolSize: POOL_SIZE, copyBatch: sizes.copyBatch, settings }, (seeded) =>
      measure(context, sizes, seeded),
    );
    return { figures };
  },
};

async function measure(context: BenchContext, sizes: Sizes, { store, target, load }: SeededAuthority): Promise<Figure[]> {
  const children: ChildProcess[] = [];
  try {
    const replicaPath = join(context.workDir, 'node.db');
    const started = performance.now();
    const replica = startReplica(replicaPath, target);
    children.push(replica.child);
    const health = await waitFresh(replicaPath, replica, 30 * 60_000);
    const buildSeconds = (performance.now() - started) / 1000;
    context.log(`vnum replica built its file and follows the slot (${buildSeconds.toFixed(1)} s); phase ${health.phase}`);
    const files = compareFiles(store.path, replicaPath);
    context.log(`files: ${files.text}`);

    const keysFile = join(context.workDir, 'keys.json');
    const mix = writeKeys(store, sizes.keys, keysFile);
    const generator = await startGenerator(keysFile);
    children.push(generator.child);
    const single = await startVnum(store.path, { timeDecisions: true });
    children.push(single.child);
    const node = await startVnum(replicaPath, { timeDecisions: true, serveArgs: ['--when-stale', 'fail-closed'] });
    children.push(node.child);
    const settings = { concurrency: CONCURRENCY, hangupEvery: HANGUP_EVERY };
    const servers = { single, node };

    for (const server of [single, node]) await generator.run({ type: 'run', port: server.port, durationMs: sizes.warmupMs, ...settings });
    await takeDecisions(single.child);
    await takeDecisions(node.child);

    const runs: Record<Side, Run[]> = { single: [], node: [] };
    const replicaCpu = { seconds: 0, wallSeconds: 0 };
    for (let round = 0; round < sizes.rounds; round++) {
      const order: Side[] = round % 2 === 0 ? ['single', 'node'] : ['node', 'single'];
      for (const side of order) {
        const run = await oneRun(generator, servers[side].child, servers[side].port, sizes.roundMs, settings, replica.child, replicaCpu);
        check(run.result, mix, side === 'node' ? 'vnum serve on the replica' : 'vnum serve on the single box');
        runs[side].push(run);
      }
      const [s, n] = [runs.single[round]!, runs.node[round]!];
      context.log(
        `round ${round + 1} (${order.join(', ')}): decision p50/p99 single ${p(s.decisions, 50)}/${p(s.decisions, 99)} µs, node ${p(n.decisions, 50)}/${p(n.decisions, 99)} µs; ` +
          `CPU/session single ${s.serverUs.toFixed(0)} µs, node ${n.serverUs.toFixed(0)} µs; sessions/s single ${formatCount(s.result.perSecond)}, node ${formatCount(n.result.perSecond)}; ` +
          `load ${loadavg()[0]!.toFixed(2)}`,
      );
      load.push(loadavg()[0]!);
    }
    const stillFresh = readHealth(replicaPath);
    const freshAge = stillFresh?.freshAt ? Date.now() - stillFresh.freshAt : null;
    await stopProcess(single.child, 'SIGTERM');
    await stopProcess(node.child, 'SIGTERM');
    generator.child.send({ type: 'exit' });

    const following = timeLookups(store, replicaPath, sizes.lookups, 19);
    // The same keys again: what the first pass read is now in the OS's cache for both files.
    const followingAgain = timeLookups(store, replicaPath, sizes.lookups, 19);
    const filesThen = compareFiles(store.path, replicaPath).text;
    load.push(loadavg()[0]!);
    const replicaShare = replicaCpu.seconds / replicaCpu.wallSeconds;
    context.log(
      `vnum replica meanwhile: ${(replicaShare * 100).toFixed(1)}% of a core; health after the rounds ${stillFresh ? `${stillFresh.phase}, fresh ${freshAge} ms before` : 'none'}; ` +
        `files after the lookups: ${filesThen}`,
    );
    // The same lookups once the replica process has stopped: the file alone, without a process following into it.
    await stopProcess(replica.child, 'SIGTERM');
    const stopped = timeLookups(store, replicaPath, sizes.lookups, 29);
    load.push(loadavg()[0]!);
    context.log(
      `store lookup p50/p99: replica following ${p(following.node, 50)}/${p(following.node, 99)} µs against single ${p(following.single, 50)}/${p(following.single, 99)} µs; ` +
        `following, the same keys again ${p(followingAgain.node, 50)}/${p(followingAgain.node, 99)} µs against ${p(followingAgain.single, 50)}/${p(followingAgain.single, 99)} µs; ` +
        `replica stopped ${p(stopped.node, 50)}/${p(stopped.node, 99)} µs against single ${p(stopped.single, 50)}/${p(stopped.single, 99)} µs`,
    );
    return figuresOf(store, sizes, mix, runs, { following, followingAgain, stopped }, { files: files.text, buildSeconds, replicaShare, load });
  } finally {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) await stopProcess(child, 'SIGTERM');
    }
  }
}

type Side = 'single' | 'node';

interface Run {
  result: RunResult;
  decisions: Float64Array;
  /** User + system CPU of the serving process per FastAGI session, µs. */
  serverUs: number;
  generatorUs: number;
}

function p(sorted: Float64Array, q: number): string {
  return percentile(sorted, q).toFixed(1);
}

async function oneRun(
  generator: Generator,
  server: ChildProcess,
  port: number,
  durationMs: number,
  settings: { concurrency: number; hangupEvery: number },
  replica: ChildProcess,
  replicaCpu: { seconds: number; wallSeconds: number },
): Promise<Run> {
  const before = [cpuSecondsOf(server.pid!)!, cpuSecondsOf(generator.child.pid!)!, cpuSecondsOf(replica.pid!)!];
  const t0 = performance.now();
  const result = await generator.run({ type: 'run', port, durationMs, ...settings });
  const wall = (performance.now() - t0) / 1000;
  const after = [cpuSecondsOf(server.pid!)!, cpuSecondsOf(generator.child.pid!)!, cpuSecondsOf(replica.pid!)];
  if (after[2] === undefined) throw new Error('vnum replica exited during the measurement');
  replicaCpu.seconds += after[2] - before[2]!;
  replicaCpu.wallSeconds += wall;
  const per = (seconds: number): number => (result.sessions > 0 ? (seconds * 1e6) / result.sessions : Number.NaN);
  const decisions = (await takeDecisions(server)).sort();
  if (decisions.length === 0) throw new Error('vnum serve timed no decision: the preload heard nothing on the route trace');
  return { result, decisions, serverUs: per(after[0]! - before[0]!), generatorUs: per(after[1]! - before[1]!) };
}

// ---------------------------------------------------------------------------
// vnum replica

interface ReplicaProcess {
  child: ChildProcess;
  stderr(): string;
}

/** The built `vnum replica` as an operator runs it, settings from the environment. */
function startReplica(dbPath: string, target: { host: string; port: number; user: string; database: string }): ReplicaProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, VNUM_AUTHORITY: `postgres://${target.user}@${target.host}:${target.port}/${target.database}`, VNUM_NODE: 'bench', VNUM_LOG_LEVEL: 'info' };
  delete env.VNUM_DB;
  const child = spawn(process.execPath, [VNUM_BIN, '--db', dbPath, 'replica'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    if (err.length > 200_000) err = err.slice(-20_000);
  });
  return { child, stderr: () => err };
}

function readHealth(path: string): ReplicaHealth | undefined {
  if (!existsSync(path)) return undefined;
  let db: Db | undefined;
  try {
    db = openDb(path, { readonly: true });
    return readReplicaHealth(db);
  } catch {
    return undefined; // not made yet, or its schema not yet written
  } finally {
    db?.close();
  }
}

/** Until the replica process has built its file, follows the slot and says it is fresh. */
async function waitFresh(path: string, replica: ReplicaProcess, timeoutMs: number): Promise<ReplicaHealth> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (replica.child.exitCode !== null) throw new Error(`vnum replica exited (${replica.child.exitCode}): ${replica.stderr().slice(-3000)}`);
    const health = readHealth(path);
    if (health?.phase === 'streaming' && health.freshAt !== null && Date.now() - health.freshAt < 2_000) return health;
    if (Date.now() > deadline) throw new Error(`vnum replica was not fresh in ${timeoutMs} ms (last health ${JSON.stringify(health)}): ${replica.stderr().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

/** Rows, pages and WAL of both files: the same rows, however each was written. */
function compareFiles(singlePath: string, replicaPath: string): { text: string } {
  const describe = (path: string): { sessions: number; bridges: number; pages: number; freelist: number; walMb: number; walFrames: number; backfilled: number } => {
    const db = openDb(path, { readonly: true });
    try {
      const counts = db.prepare<[], { sessions: number; bridges: number }>('SELECT (SELECT count(*) FROM session) AS sessions, (SELECT count(*) FROM bridge) AS bridges').get()!;
      const pages = db.pragma('page_count', { simple: true }) as number;
      const freelist = db.pragma('freelist_count', { simple: true }) as number;
      const wal = existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size / 2 ** 20 : 0;
      return { ...counts, pages, freelist, walMb: wal, ...walIndex(path) };
    } finally {
      db.close();
    }
  };
  const [s, r] = [describe(singlePath), describe(replicaPath)];
  if (s.sessions !== r.sessions || s.bridges !== r.bridges) {
    throw new Error(`the replica holds ${r.sessions} sessions and ${r.bridges} bridges, the single box ${s.sessions} and ${s.bridges}`);
  }
  const one = (x: typeof s): string =>
    `${formatCount(x.pages)} pages (${formatCount(x.freelist)} free), WAL ${x.walMb.toFixed(1)} MB (${formatCount(x.walFrames)} frames, ${formatCount(x.walFrames - x.backfilled)} not yet checkpointed)`;
  return { text: `${formatCount(s.sessions)} sessions and ${formatCount(s.bridges)} bridges in both; single box ${one(s)}, replica ${one(r)}` };
}

/**
 * How many frames the WAL holds and how many of them a checkpoint has copied
 * back into the database file, read from the -shm file's header without
 * taking a lock or running a checkpoint (SQLite's wal.c: WalIndexHdr.mxFrame
 * at byte 16, WalCkptInfo.nBackfill at byte 96, native byte order). A reader
 * looks every page up in the WAL's index first, and reads it from the WAL
 * while it is there.
 */
export function walIndex(path: string): { walFrames: number; backfilled: number } {
  if (!existsSync(`${path}-shm`)) return { walFrames: 0, backfilled: 0 };
  const header = readFileSync(`${path}-shm`).subarray(0, 136);
  if (header.length < 100) return { walFrames: 0, backfilled: 0 };
  return { walFrames: header.readUInt32LE(16), backfilled: header.readUInt32LE(96) };
}

// ---------------------------------------------------------------------------
// The store lookup alone, both files, one process, call by call in turn

function timeLookups(store: SeededStore, replicaPath: string, count: number, seed: number): { single: Float64Array; node: Float64Array } {
  const single = openDb(store.path, { mode: 'read' });
  const node = openDb(replicaPath, { mode: 'read' });
  try {
    const keys = sampleBridgeKeys(single, count, seed);
    const lookups = { single: storeBridgeLookup(single), node: storeBridgeLookup(node) };
    const times = { single: new Float64Array(count), node: new Float64Array(count) };
    const warmUp = Math.ceil(count / 20);
    for (let i = -warmUp; i < count; i++) {
      const k = keys[(i + count) % count]!;
      // Alternate which file goes first, so neither always reads after the other.
      const order: Side[] = i % 2 === 0 ? ['single', 'node'] : ['node', 'single'];
      for (const side of order) {
        let found = true;
        const took = elapsedMicros(() => (found = lookups[side].live(k.caller as E164, k.dialled as E164) !== undefined));
        if (!found) throw new Error(`the ${side} file has no bridge for ${k.caller} -> ${k.dialled}`);
        if (i >= 0) times[side][i] = took;
      }
    }
    times.single.sort();
    times.node.sort();
    return times;
  } finally {
    single.close();
    node.close();
  }
}

// ---------------------------------------------------------------------------
// Figures

function figuresOf(
  store: SeededStore,
  sizes: Sizes,
  mix: KeyMix,
  runs: Record<Side, Run[]>,
  lookups: Record<'following' | 'followingAgain' | 'stopped', { single: Float64Array; node: Float64Array }>,
  notes: { files: string; buildSeconds: number; replicaShare: number; load: number[] },
): Figure[] {
  const fmt = (values: number[], digits = 0): string => values.map((v) => v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })).join(' · ');
  const loadText = `load average (1 min) ${fmt(notes.load, 1)} over the run`;
  const setting =
    `${formatCount(store.sessions)} live sessions, ${formatCount(store.poolSize)} numbers, the same rows in both files (node's built by vnum replica from PostgreSQL in ${notes.buildSeconds.toFixed(0)} s, then following; vnum replica used ${(notes.replicaShare * 100).toFixed(1)}% of a core meanwhile); ` +
    `${CONCURRENCY} concurrent FastAGI sessions, one generator, ${sizes.rounds} × ${sizes.roundMs / 1000} s per file, alternating single/node then node/single; ` +
    `${Math.round((mix.bridge / (mix.bridge + mix.noSession)) * 100)}% BRIDGE keys; node serve --when-stale fail-closed (every answer checked); ${loadText}`;
  const decisions = { single: concatenate(runs.single.map((r) => r.decisions)), node: concatenate(runs.node.map((r) => r.decisions)) };
  const figures: Figure[] = [];
  for (const q of [50, 99, 99.9]) {
    const value = percentile(decisions.node, q);
    const baseline = percentile(decisions.single, q);
    const perRound = `per run node ${fmt(runs.node.map((r) => percentile(r.decisions, q)))} µs, single ${fmt(runs.single.map((r) => percentile(r.decisions, q)))} µs`;
    figures.push({
      name: `routing decision p${q} inside vnum serve on a cluster node's replica (route(): numbers, lookup)`,
      unit: 'µs',
      value,
      baseline: { name: `the same on the single box's file, same rounds`, value: baseline },
      ...(q === 99 ? { target: { text: `≤ ${P99_TARGET_RATIO}× single box`, met: value <= P99_TARGET_RATIO * baseline } } : {}),
      size: `${setting}; ${formatCount(decisions.node.length)} + ${formatCount(decisions.single.length)} decisions; ${perRound}`,
    });
  }
  const cpu = { node: runs.node.map((r) => r.serverUs), single: runs.single.map((r) => r.serverUs) };
  figures.push({
    name: 'CPU (user + system) of vnum serve per FastAGI session on a cluster node (gate on, replica following), median of runs',
    unit: 'µs',
    value: median(cpu.node),
    baseline: { name: 'the same, vnum serve on the single box', value: median(cpu.single) },
    size: `${setting}; per run node ${fmt(cpu.node)} µs, single ${fmt(cpu.single)} µs; generator ${fmt(runs.node.map((r) => r.generatorUs))} / ${fmt(runs.single.map((r) => r.generatorUs))} µs per session (node / single)`,
  });
  const rates = { node: runs.node.map((r) => r.result.perSecond), single: runs.single.map((r) => r.result.perSecond) };
  figures.push({
    name: 'FastAGI sessions/s of vnum serve on a cluster node, median of runs',
    unit: '/s',
    value: median(rates.node),
    baseline: { name: 'the same, vnum serve on the single box', value: median(rates.single) },
    size: `${setting}; per run node ${fmt(rates.node)}/s, single ${fmt(rates.single)}/s`,
  });
  const states = {
    following: 'vnum replica following into it',
    followingAgain: 'vnum replica following into it, the same keys again',
    stopped: 'vnum replica stopped, other keys',
  } as const;
  for (const state of ['following', 'followingAgain', 'stopped'] as const) {
    const { node, single } = lookups[state];
    for (const q of [50, 99]) {
      figures.push({
        name: `store lookup (bridge join session) p${q} on the replica file, in-process, ${states[state]}`,
        unit: 'µs',
        value: percentile(node, q),
        baseline: { name: "the same on the single box's file, call by call in turn", value: percentile(single, q) },
        size: `${formatCount(node.length)} random live pairs each; ${notes.files}; ${loadText}`,
      });
    }
  }
  return figures;
}
