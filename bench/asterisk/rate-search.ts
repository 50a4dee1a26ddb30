import { ROUTES, type Route } from './config.js';
import type { CallRunner, StepResult } from './calls.js';

/**
 * What the real-Asterisk benchmark measures with its calls: the answer time at
 * a low rate, and the highest rate each route carries with no failed call
 * (climbing a ladder of rates in alternating steps, then bisecting).
 */

/** The two routes whose highest call rate is compared. */
export type Climbed = 'vnum' | 'static';

export interface SearchSizes {
  ladder: number[];
  stepSeconds: number;
  bisections: number;
  answerRate: number;
  answerBlocks: number;
  answerSeconds: number;
}

export interface Ladder {
  /** Highest rate passed, per route, and whether a failing rate above it was found. */
  best: Record<Climbed, { rate: number; achieved: number; capped: boolean }>;
  retries: number;
  steps: StepResult[];
}

export async function climb(runner: CallRunner, sizes: SearchSizes): Promise<Ladder> {
  const best: Ladder['best'] = {
    vnum: { rate: 0, achieved: 0, capped: false },
    static: { rate: 0, achieved: 0, capped: false },
  };
  const failedAt: Record<Climbed, number> = { vnum: Infinity, static: Infinity };
  const steps: StepResult[] = [];
  let retries = 0;
  let flip = false;
  const tryRate = async (route: Climbed, rate: number): Promise<boolean> => {
    const calls = Math.round(rate * sizes.stepSeconds);
    let result = await runner.step(route, rate, calls);
    steps.push(result);
    if (!result.passed) {
      retries++;
      result = await runner.step(route, rate, calls);
      steps.push(result);
    }
    if (result.passed) {
      if (rate > best[route].rate) best[route] = { rate, achieved: result.achieved, capped: false };
    } else failedAt[route] = Math.min(failedAt[route], rate);
    return result.passed;
  };
  for (const rate of sizes.ladder) {
    const routes: Climbed[] = flip ? ['static', 'vnum'] : ['vnum', 'static'];
    flip = !flip;
    let any = false;
    for (const route of routes) {
      if (failedAt[route] !== Infinity) continue;
      any = true;
      await tryRate(route, rate);
    }
    if (!any) break;
  }
  for (let i = 0; i < sizes.bisections; i++) {
    for (const route of ['vnum', 'static'] as const) {
      if (failedAt[route] === Infinity) continue;
      const mid = Math.round((best[route].rate + failedAt[route]) / 2 / 10) * 10;
      if (mid > best[route].rate && mid < failedAt[route]) await tryRate(route, mid);
    }
  }
  for (const route of ['vnum', 'static'] as const) best[route].capped = failedAt[route] === Infinity;
  return { best, retries, steps };
}

export type AnswerTimes = Record<Route, number[]>;

export async function answerTimes(runner: CallRunner, sizes: SearchSizes): Promise<AnswerTimes> {
  const times: AnswerTimes = { vnum: [], static: [], floor: [] };
  const calls = sizes.answerRate * sizes.answerSeconds;
  for (let block = 0; block < sizes.answerBlocks; block++) {
    // Each block a different order: no route always follows the same one.
    const order = ROUTES.map((_, i) => ROUTES[(i + block) % ROUTES.length]!);
    for (const route of order) {
      let result = await runner.step(route, sizes.answerRate, calls);
      if (!result.passed) result = await runner.step(route, sizes.answerRate, calls);
      if (!result.passed) throw new Error(`answer-time block failed twice at ${sizes.answerRate}/s: ${result.summary}`);
      times[route].push(...result.rtdMs);
    }
  }
  return times;
}
