import { readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { openDb } from '../src/store/db.js';
import { Asterisk } from '../test/support/asterisk/asterisk.js';
import { asteriskRoot } from '../test/support/asterisk/paths.js';
import { asteriskBlocker, provision } from '../test/support/asterisk/provision.js';
import { repoPath } from '../test/support/repo.js';
import { formatCount, percentile, type Benchmark, type Figure } from './benchmark.js';
import { startVnum, stopProcess } from './processes.js';
import { startBareResponder } from './agi-bare.js';
import { sampleBridgeKeys, seedStore } from './seed.js';
import { CallRunner, HOLD_MS, startFarEnd } from './asterisk/calls.js';
import { CONTEXT, PJSIP_CONF, ROUTES, STATIC_DIALPLAN } from './asterisk/config.js';
import { answerTimes, climb, type AnswerTimes, type Ladder, type SearchSizes } from './asterisk/rate-search.js';

/**
 * Real SIP calls through a real Asterisk 22 (the e2e harness's sid root),
 * routed by vnum (dialplan/vnum.conf as shipped, asking the real `vnum serve`
 * over FastAGI) against the same calls through a static dialplan without AGI
 * (Set CALLERID, Dial), in one Asterisk, in one run:
 *
 *   sipp UAC 127.0.0.1:5071 --INVITE--> Asterisk 127.0.0.1:5060
 *     endpoint `carrier` (context vnum-inbound: AGI, then Dial), or, for calls
 *     carrying `X-Bench-Route: static`, endpoint `static-in` (bench-static),
 *     or `X-Bench-Route: floor`, endpoint `floor-in` (bench-floor: the static
 *     dialplan plus one FastAGI call to a bare responder, for answer times)
 *   Asterisk --INVITE--> sipp UAS 127.0.0.1:5072 (answers at once)
 *
 * The callers and DIDs are live bridges of a seeded store, so every routed
 * call is a real BRIDGE; the static calls use the same numbers, and no step
 * reuses a pair an earlier step called. After a warm-up of every route, the
 * answer time (INVITE -> 200, sipp's rtd) is measured at a low rate in
 * blocks of rotating order; then rates climb in alternating steps (vnum, static,
 * static, vnum, ...) until a step has a failed call or falls 5% short of its
 * rate (retried once, to tell a neighbour's burst from a limit), then bisect
 * (asterisk/rate-search.ts). Loopback only; needs root and the provisioned
 * root, and says why it skips otherwise.
 */

const RATE_TARGET = 0.95;
const ANSWER_ADDED_TARGET_MS = 0.5;

const SIZES: Record<'full' | 'smoke', SearchSizes & { sessions: number }> = {
  full: {
    sessions: 100_000,
    ladder: [100, 150, 200, 250, 300, 350, 400, 450, 500, 600],
    stepSeconds: 3,
    bisections: 2,
    answerRate: 50,
    answerBlocks: 2,
    answerSeconds: 5,
  },
  smoke: { sessions: 1_000, ladder: [5], stepSeconds: 1, bisections: 0, answerRate: 5, answerBlocks: 1, answerSeconds: 1 },
};

export const asteriskBenchmark: Benchmark = {
  name: 'asterisk',
  description: 'real Asterisk 22: highest call rate with zero failures and INVITE->200 time, via vnum against a static dialplan',
  async run(context) {
    const blocker = asteriskBlocker();
    if (blocker !== null) return { figures: [], skipped: blocker };
    context.log(`provisioning ${asteriskRoot} (test/support/asterisk/provision.sh; fast when cached)`);
    try {
      await provision();
    } catch (e) {
      return { figures: [], skipped: `cannot provision Asterisk: ${(e as Error).message.trim().split('\n').at(-1)}` };
    }
    const sizes = context.smoke ? SIZES.smoke : SIZES.full;

    context.log(`seeding ${formatCount(sizes.sessions)} sessions`);
    const store = seedStore(join(context.workDir, 'asterisk.db'), { sessions: sizes.sessions, poolSize: 1000 });
    const db = openDb(store.path, { readonly: true });
    const keys = sampleBridgeKeys(db, 60_000, 19).map((k) => `${k.caller};${k.dialled}`);
    db.close();

    const processes: ChildProcess[] = [];
    let asterisk: Asterisk | undefined;
    let floor: Server | undefined;
    try {
      const vnum = await startVnum(store.path);
      processes.push(vnum.child);
      floor = await startBareResponder();
      processes.push(await startFarEnd(context.workDir));
      const dialplan = join(context.workDir, 'vnum-and-static.conf');
      writeFileSync(dialplan, readFileSync(repoPath('dialplan/vnum.conf'), 'utf8') + STATIC_DIALPLAN);
      asterisk = await Asterisk.start(
        { pjsipConf: PJSIP_CONF, dialplanFile: dialplan, globals: {
            VNUM_AGI_URL: `agi://127.0.0.1:${vnum.port}/route`,
            BENCH_FLOOR_AGI_URL: `agi://127.0.0.1:${(floor.address() as AddressInfo).port}/route`,
          },
        },
        asteriskRoot,
      );
      const version = /Asterisk (\S+)/.exec(asterisk.cli('core show version'))?.[1] ?? 'unknown';
      context.log(`Asterisk ${version} up; vnum serve on ${vnum.port}`);
      const runner = new CallRunner(asterisk, keys, context);

      // Each route must carry one call the way it should before anything is
      // measured: a wrong setup fails here, loudly.
      for (const route of ROUTES) {
        const before = asterisk.log().length;
        const probe = await runner.step(route, 1, 1);
        const log = asterisk.log().slice(before);
        const dialled = new RegExp(`@${CONTEXT[route]}:\\d+\\] Dial\\(`).test(log);
        if (!probe.passed || !dialled) {
          throw new Error(`the ${route} route does not work: ${probe.summary}\n${log.split('\n').slice(-40).join('\n')}`);
        }
      }
      // As an operator's box runs (Asterisk's packaged logger.conf writes no
      // verbose lines to files): the harness logs every dialplan priority, ~60
      // lines a routed call against 3 for the baseline, which would bill the
      // logging to vnum.
      asterisk.quietLog();
      // Warm both routes (vnum serve's JIT, Asterisk's caches), then the answer
      // time while nothing has been overloaded yet, then the climb to failure.
      if (!context.smoke) {
        for (const route of ROUTES) await runner.step(route, 100, 500);
      }
      const answer = await answerTimes(runner, sizes);
      const ladder = await climb(runner, sizes);
      return { figures: figuresOf(ladder, answer, sizes, store.sessions), versions: { asterisk: version } };
    } finally {
      await asterisk?.stop();
      for (const child of processes) await stopProcess(child);
      floor?.close();
    }
  },
};

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function figuresOf(ladder: Ladder, answer: AnswerTimes, sizes: SearchSizes, sessions: number): Figure[] {
  const { vnum, static: baseline } = ladder.best;
  const rateRatio = baseline.rate > 0 ? vnum.rate / baseline.rate : 0;
  const bound = (b: { capped: boolean }) => (b.capped ? ' (no failure up to the top of the ladder: a lower bound)' : '');
  const setup = `one Asterisk, sipp UAC and UAS, vnum serve (${formatCount(sessions)} live sessions), routes side by side on 127.0.0.1; calls held ${HOLD_MS} ms`;
  const vnumMean = mean(answer.vnum);
  const staticMean = mean(answer.static);
  const floorMean = mean(answer.floor);
  const sorted = (v: number[]) => [...v].sort((a, b) => a - b);
  const answerSize =
    `${formatCount(answer.vnum.length)} calls a route at ${sizes.answerRate}/s in blocks of rotating order; sipp rtd (whole ms, so the mean of many calls); ` +
    `added ${(vnumMean - staticMean).toFixed(2)} ms, of which a bare FastAGI call ${(floorMean - staticMean).toFixed(2)} ms`;
  return [
    {
      name: `highest call rate with zero failed calls, through vnum (dialplan/vnum.conf + FastAGI to vnum serve)${bound(vnum)}`,
      unit: '/s',
      value: vnum.rate,
      baseline: { name: `the same calls through a static dialplan (Set CALLERID, Dial), no AGI${bound(baseline)}`, value: baseline.rate },
      target: { text: `≥ ${RATE_TARGET}× the static dialplan`, met: rateRatio >= RATE_TARGET },
      size: `${setup}; ${sizes.stepSeconds} s steps, alternating routes, a failed step retried once (${ladder.retries} retries); achieved ${vnum.achieved.toFixed(0)}/s and ${baseline.achieved.toFixed(0)}/s`,
    },
    {
      name: 'mean INVITE→200 (answer time) through vnum',
      unit: 'ms',
      value: vnumMean,
      baseline: { name: 'mean INVITE→200 through the static dialplan', value: staticMean },
      target: { text: `≤ ${ANSWER_ADDED_TARGET_MS} ms added`, met: vnumMean - staticMean <= ANSWER_ADDED_TARGET_MS },
      size: `${setup}; ${answerSize}`,
    },
    {
      name: 'INVITE→200 p99 through vnum',
      unit: 'ms',
      value: percentile(sorted(answer.vnum), 99),
      baseline: { name: 'INVITE→200 p99 through the static dialplan', value: percentile(sorted(answer.static), 99) },
      size: `${setup}; ${answerSize}`,
    },
    {
      name: 'mean INVITE→200 through the static dialplan plus one FastAGI call to a bare responder (what any FastAGI router costs)',
      unit: 'ms',
      value: floorMean,
      baseline: { name: 'mean INVITE→200 through the static dialplan', value: staticMean },
      size: `${setup}; ${answerSize}; vnum above this floor ${(vnumMean - floorMean).toFixed(2)} ms`,
    },
  ];
}
