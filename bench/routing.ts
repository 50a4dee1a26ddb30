import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDb } from '../src/store/db.js';
import { cpuSecondsOf, memoryOf } from '../test/support/proc.js';
import { elapsedMicros, formatCount, percentile, type Benchmark, type Figure } from './benchmark.js';
import { customerNumber, poolNumbers, prng, sampleBridgeKeys, seedStore, type SeededStore } from './seed.js';
import type { RunRequest, RunResult } from './agi-load.js';
import { profileArgs, startVnum, stopProcess, takeDecisions } from './processes.js';

/**
 * The real `vnum serve` (the built CLI, its own process) over a store of
 * 1,000,000 live sessions, against a bare FastAGI responder (its own process,
 * same answer, no lookup), both driven by ONE load generator process
 * (bench/agi-load.ts) with the same settings, in alternating rounds (vnum,
 * bare, vnum, bare, ...) so that a neighbour's burst lands on both.
 *
 * The routing decision is timed inside that vnum serve under that load: the
 * router's whole `route` call, which the product traces and a preload of the
 * bench's own times (bench/decision-timing.ts). Its baseline is a bare
 * primary-key point read on the same file, timed here afterwards, as in the
 * store benchmark.
 *
 * VNUM_BENCH_CPU_PROF=<dir> runs both servers under `node --cpu-prof` and
 * leaves the profiles there (summarise them with bench/cpuprofile.ts).
 */

const GENERATOR = fileURLToPath(new URL('./agi-load.js', import.meta.url));
const BARE = fileURLToPath(new URL('./agi-bare.js', import.meta.url));

const POOL_SIZE = 1000;
const CONCURRENCY = 50;
const HANGUP_EVERY = 20;
const THROUGHPUT_TARGET = 0.8;
const DECISION_P99_TARGET_US = 500;
const RSS_TARGET_MB = 150;

const SIZES = {
  full: { sessions: 1_000_000, keys: 50_000, rounds: 5, roundMs: 5_000, warmupMs: 3_000, pointReads: 100_000 },
  smoke: { sessions: 10_000, keys: 2_000, rounds: 1, roundMs: 1_000, warmupMs: 300, pointReads: 2_000 },
};

export const routingBenchmark: Benchmark = {
  name: 'routing',
  description: 'FastAGI sessions/s and latency: vnum serve over 1,000,000 sessions against a bare responder; decision time in the server; RSS',
  async run(context) {
    const sizes = context.smoke ? SIZES.smoke : SIZES.full;
    context.log(`seeding ${formatCount(sizes.sessions)} sessions`);
    const store = seedStore(join(context.workDir, 'routing.db'), { sessions: sizes.sessions, poolSize: POOL_SIZE, log: context.log });
    context.log(`seeded in ${(store.seedMs / 1000).toFixed(1)} s`);
    const keysFile = join(context.workDir, 'keys.json');
    const mix = writeKeys(store, sizes.keys, keysFile);

    const profileDir = process.env.VNUM_BENCH_CPU_PROF;
    const children: ChildProcess[] = [];
    try {
      const generator = await startGenerator(keysFile);
      children.push(generator.child);
      const bare = await startBare(profileDir);
      children.push(bare.child);
      const vnum = await startVnum(store.path, { timeDecisions: true, profileDir });
      children.push(vnum.child);
      const settings = { concurrency: CONCURRENCY, hangupEvery: HANGUP_EVERY };

      // Warm both up (JIT, page cache), then drop the decisions timed meanwhile.
      for (const target of [vnum, bare]) {
        await generator.run({ type: 'run', port: target.port, durationMs: sizes.warmupMs, ...settings });
      }
      await takeDecisions(vnum.child);

      const rounds: Round[] = [];
      const decisions: Float64Array[] = [];
      // CPU (user + system) per session of the serving process and of the generator, over each run.
      const cpuPerSession = async (port: number, server: ChildProcess): Promise<{ result: RunResult; cpu: Cpu }> => {
        const [s0, g0] = [cpuSecondsOf(server.pid!)!, cpuSecondsOf(generator.child.pid!)!];
        const result = await generator.run({ type: 'run', port, durationMs: sizes.roundMs, ...settings });
        const [s1, g1] = [cpuSecondsOf(server.pid!)!, cpuSecondsOf(generator.child.pid!)!];
        const per = (seconds: number) => (result.sessions > 0 ? (seconds * 1e6) / result.sessions : Number.NaN);
        return { result, cpu: { serverUs: per(s1 - s0), generatorUs: per(g1 - g0) } };
      };
      for (let round = 0; round < sizes.rounds; round++) {
        const a = await cpuPerSession(vnum.port, vnum.child);
        const timed = await takeDecisions(vnum.child);
        if (timed.length === 0) throw new Error('vnum serve timed no decision: the preload heard nothing on the route trace');
        decisions.push(timed);
        const b = await cpuPerSession(bare.port, bare.child);
        check(a.result, mix, 'vnum serve');
        check(b.result, null, 'bare responder');
        rounds.push({ vnum: a.result, bare: b.result, vnumCpu: a.cpu, bareCpu: b.cpu });
        const [ra, rb] = [a.result, b.result];
        context.log(
          `round ${round + 1}: vnum ${formatCount(ra.perSecond)}/s (p50 ${ra.latencyUs.p50.toFixed(0)} µs, p99 ${ra.latencyUs.p99.toFixed(0)} µs, ` +
            `CPU ${a.cpu.serverUs.toFixed(0)} µs/session, generator ${a.cpu.generatorUs.toFixed(0)}), ` +
            `bare ${formatCount(rb.perSecond)}/s (p50 ${rb.latencyUs.p50.toFixed(0)} µs, p99 ${rb.latencyUs.p99.toFixed(0)} µs, ` +
            `CPU ${b.cpu.serverUs.toFixed(0)} µs/session, generator ${b.cpu.generatorUs.toFixed(0)}), ` +
            `ratio ${(ra.perSecond / rb.perSecond).toFixed(2)}; ${JSON.stringify(ra.statuses)}`,
        );
      }
      const rss = { vnum: megabytes(vnum.child.pid!), bare: megabytes(bare.child.pid!) };
      await stopProcess(vnum.child, 'SIGTERM');
      await stopProcess(bare.child);
      generator.child.send({ type: 'exit' });

      const pointReads = timePointReads(store, sizes.pointReads);
      return { figures: figuresOf(store, sizes, mix, rounds, concatenate(decisions), pointReads, rss) };
    } finally {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  },
};

interface Cpu {
  /** User + system CPU of the serving process per session it served, µs. */
  serverUs: number;
  /** The same for the load generator over that run. */
  generatorUs: number;
}

interface Round {
  vnum: RunResult;
  bare: RunResult;
  vnumCpu: Cpu;
  bareCpu: Cpu;
}

// ---------------------------------------------------------------------------
// Keys: live bridges drawn over the whole store, numbers as carriers deliver them

export interface KeyMix {
  bridge: number;
  noSession: number;
}

function asDelivered(e164: string, r: number, national: number, digits: number): string {
  if (r < national) return `0${e164.slice(3)}`; // UK numbers: +44 then the national number
  if (r < national + digits) return e164.slice(1);
  return e164;
}

/**
 * 90% live (caller, dialled) pairs of the store (BRIDGE), 10% a caller in no
 * session dialling a pool number (NO_SESSION). Callers: 70% +E.164, 20%
 * national with the trunk 0, 10% digits; DIDs: 80% +E.164, 20% digits.
 */
export function writeKeys(store: SeededStore, count: number, file: string): KeyMix {
  const db = openDb(store.path, { readonly: true });
  const live = sampleBridgeKeys(db, Math.round(count * 0.9), 11);
  db.close();
  const pool = poolNumbers(store.poolSize);
  const random = prng(5);
  const keys: [string, string][] = live.map((k) => [asDelivered(k.caller, random(), 0.2, 0.1), asDelivered(k.dialled, random(), 0, 0.2)]);
  const strangers = count - keys.length;
  for (let i = 0; i < strangers; i++) {
    const caller = customerNumber(store.customers + i); // beyond every seeded customer
    keys.push([asDelivered(caller, random(), 0.2, 0.1), asDelivered(pool[Math.floor(random() * pool.length)]!, random(), 0, 0.2)]);
  }
  for (let i = keys.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [keys[i], keys[j]] = [keys[j]!, keys[i]!];
  }
  writeFileSync(file, JSON.stringify(keys));
  return { bridge: live.length, noSession: strangers };
}

/** Every session answered, and with the decision its key calls for (the mix: roughly 90/10). */
export function check(result: RunResult, mix: KeyMix | null, what: string): void {
  if (result.failures > 0) {
    throw new Error(`${what}: ${result.failures} sessions failed, e.g. ${result.failureSamples.join('; ')}`);
  }
  if (result.sessions === 0) throw new Error(`${what}: no session completed`);
  if (mix === null) return;
  const { BRIDGE = 0, NO_SESSION = 0, ...others } = result.statuses;
  if (Object.keys(others).length > 0) throw new Error(`${what}: unexpected answers ${JSON.stringify(others)}`);
  const share = BRIDGE / (BRIDGE + NO_SESSION);
  const expected = mix.bridge / (mix.bridge + mix.noSession);
  if (Math.abs(share - expected) > 0.05) {
    throw new Error(`${what}: ${(share * 100).toFixed(1)}% BRIDGE, expected ~${(expected * 100).toFixed(1)}%`);
  }
}

// ---------------------------------------------------------------------------
// Processes

export interface Generator {
  child: ChildProcess;
  run(request: RunRequest): Promise<RunResult>;
}

export function nextMessage<T>(child: ChildProcess, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: T): void => {
      cleanup();
      resolve(message);
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`${what} exited (${code}) before answering`));
    };
    const cleanup = (): void => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

export async function startGenerator(keysFile: string): Promise<Generator> {
  const child = fork(GENERATOR, [keysFile], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await nextMessage<{ type: 'ready' }>(child, 'the load generator');
  return {
    child,
    async run(request) {
      const answer = nextMessage<RunResult | { type: 'error'; message: string }>(child, 'the load generator');
      child.send(request);
      const result = await answer;
      if (result.type === 'error') throw new Error(`load generator: ${result.message}`);
      return result;
    },
  };
}

async function startBare(profileDir: string | undefined): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(BARE, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: profileArgs(profileDir, 'bare') });
  const { port } = await nextMessage<{ type: 'listening'; port: number }>(child, 'the bare responder');
  return { child, port };
}

/** Resident and peak resident memory of a live process, MB. */
function megabytes(pid: number): { rssMb: number; hwmMb: number } {
  const m = memoryOf(pid);
  if (!m) throw new Error(`process ${pid} is gone`);
  return { rssMb: m.rss / 2 ** 20, hwmMb: m.peak / 2 ** 20 };
}

// ---------------------------------------------------------------------------
// Baseline for the decision and figures

/** A bare primary-key point read on the session table of the same file, as the store benchmark's baseline. */
function timePointReads(store: SeededStore, count: number): Float64Array {
  const db = openDb(store.path, { readonly: true });
  const read = db.prepare('SELECT first_party, second_masked_as FROM session WHERE sid = ?');
  const random = prng(3);
  const times = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const sid = 1 + Math.floor(random() * store.sessions);
    times[i] = elapsedMicros(() => read.get(sid));
  }
  db.close();
  return times.sort();
}

/** Parts joined and sorted. */
export function concatenate(parts: Float64Array[]): Float64Array {
  const all = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all.sort();
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function range(values: number[], digits = 0): string {
  const fmt = (v: number) => v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  return values.map(fmt).join(' · ');
}

function figuresOf(
  store: SeededStore,
  sizes: (typeof SIZES)['full'],
  mix: KeyMix,
  rounds: Round[],
  decisions: Float64Array,
  pointReads: Float64Array,
  rss: { vnum: { rssMb: number; hwmMb: number }; bare: { rssMb: number; hwmMb: number } },
): Figure[] {
  const load = `${CONCURRENCY} concurrent FastAGI sessions, one generator, ${rounds.length} × ${sizes.roundMs / 1000} s per target alternating`;
  const storeSize = `${formatCount(store.sessions)} live sessions, ${formatCount(store.poolSize)} numbers`;
  const keys = `${Math.round((mix.bridge / (mix.bridge + mix.noSession)) * 100)}% BRIDGE / ${Math.round((mix.noSession / (mix.bridge + mix.noSession)) * 100)}% NO_SESSION keys`;
  const vnumRates = rounds.map((r) => r.vnum.perSecond);
  const bareRates = rounds.map((r) => r.bare.perSecond);
  const ratios = rounds.map((r) => r.vnum.perSecond / r.bare.perSecond);
  // A round's two runs are seconds apart, so a neighbour's burst skews one
  // round's ratio, not every round's: the figure is the round with the median
  // ratio (an odd number of rounds makes it a real round), its two rates side
  // by side. A ratio of medians taken across rounds could pair one round's
  // undisturbed vnum run with another round's disturbed bare run.
  const ratioOf = (r: Round): number => r.vnum.perSecond / r.bare.perSecond;
  const middle = [...rounds].sort((a, b) => ratioOf(a) - ratioOf(b))[Math.floor((rounds.length - 1) / 2)]!;
  const throughput = ratioOf(middle);
  const figures: Figure[] = [
    {
      name: 'FastAGI sessions/s, the round with the median ratio (vnum serve, real CLI process)',
      unit: '/s',
      value: middle.vnum.perSecond,
      baseline: { name: 'bare Node responder in the same round, same answer, no lookup', value: middle.bare.perSecond },
      target: { text: `≥ ${THROUGHPUT_TARGET}× the bare responder`, met: throughput >= THROUGHPUT_TARGET },
      size: `${storeSize}; ${load}; per round vnum ${range(vnumRates)}/s, bare ${range(bareRates)}/s, ratio ${range(ratios, 2)}`,
    },
  ];
  for (const [label, pick] of [
    ['p50', (r: RunResult) => r.latencyUs.p50],
    ['p99', (r: RunResult) => r.latencyUs.p99],
    ['p99.9', (r: RunResult) => r.latencyUs.p999],
  ] as const) {
    const v = rounds.map((r) => pick(r.vnum));
    const b = rounds.map((r) => pick(r.bare));
    figures.push({
      name: `FastAGI session latency ${label}, connect to close, median of rounds`,
      unit: 'µs',
      value: median(v),
      baseline: { name: `bare responder session ${label}`, value: median(b) },
      size: `${storeSize}; ${load}; per round vnum ${range(v)} µs, bare ${range(b)} µs`,
    });
  }
  const vnumCpu = rounds.map((r) => r.vnumCpu.serverUs);
  const bareCpu = rounds.map((r) => r.bareCpu.serverUs);
  const generatorCpu = rounds.flatMap((r) => [r.vnumCpu.generatorUs, r.bareCpu.generatorUs]);
  figures.push({
    name: 'CPU (user + system) of the serving process per FastAGI session, median of rounds',
    unit: 'µs',
    value: median(vnumCpu),
    baseline: { name: 'bare responder CPU per session', value: median(bareCpu) },
    size: `${storeSize}; ${load}; /proc utime+stime over each run; per round vnum ${range(vnumCpu)} µs, bare ${range(bareCpu)} µs; the generator ${range(generatorCpu)} µs per session (vnum, bare, ...)`,
  });
  const decisionRounds = `${formatCount(decisions.length)} decisions timed in vnum serve under the load (${keys}, numbers as carriers deliver them)`;
  for (const p of [50, 99, 99.9]) {
    const value = percentile(decisions, p);
    figures.push({
      name: `routing decision p${p} inside vnum serve (route(): file check, normalise both numbers, lookup)`,
      unit: 'µs',
      value,
      baseline: { name: `bare primary-key point read p${p}, same file, in-process`, value: percentile(pointReads, p) },
      ...(p === 99 ? { target: { text: `≤ ${DECISION_P99_TARGET_US} µs`, met: value <= DECISION_P99_TARGET_US } } : {}),
      size: `${storeSize}; ${decisionRounds}`,
    });
  }
  figures.push({
    name: 'resident memory (VmRSS) of vnum serve after the load',
    unit: 'MB',
    value: rss.vnum.rssMb,
    baseline: { name: 'bare responder after the same load', value: rss.bare.rssMb },
    target: { text: `≤ ${RSS_TARGET_MB} MB`, met: rss.vnum.rssMb <= RSS_TARGET_MB && rss.vnum.hwmMb <= RSS_TARGET_MB },
    size: `${storeSize}; peak (VmHWM) vnum ${rss.vnum.hwmMb.toFixed(1)} MB, bare ${rss.bare.hwmMb.toFixed(1)} MB`,
  });
  return figures;
}
