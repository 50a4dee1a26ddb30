import { join } from 'node:path';
import { openDb } from '../src/store/db.js';
import { addToPool } from '../src/pool/pool.js';
import { createSession, releaseSession, DEFAULT_GRACE_MS, type PartyInput } from '../src/session/sessions.js';
import { invariantViolations } from '../src/session/invariant.js';
import { ErrorCode, isVnumError } from '../src/errors.js';
import { parseNumber } from '../src/numbers/normalise.js';
import { formatCount, type Benchmark, type BenchContext, type Figure } from './benchmark.js';
import { busiestParty, deliveryDay, sharedNumberRefusals, type DayOptions, type DeliveryDay } from './delivery-day.js';
import { agentNumber, customerNumber, poolNumbers } from './seed.js';

const DAY: Record<'full' | 'smoke', DayOptions> = {
  full: { agents: 500, maxAgentOrders: 5, hours: 12, baseRate: 3, graceMs: DEFAULT_GRACE_MS, parallelShare: 0.05, returningShare: 0.15, seed: 2026 },
  smoke: { agents: 8, maxAgentOrders: 3, hours: 3, baseRate: 3, graceMs: DEFAULT_GRACE_MS, parallelShare: 0.1, returningShare: 0.15, seed: 2026 },
};

export const poolSizeBenchmark: Benchmark = {
  name: 'pool-size',
  description: 'smallest pool serving a synthetic delivery day with zero refusals, against the lower bound and the shared-number rule 2k − 1',
  async run(context) {
    const day = deliveryDay(context.smoke ? DAY.smoke : DAY.full);
    const bound = busiestParty(day);
    const k = bound.sessions;
    context.log(
      `${formatCount(day.orders.length)} orders, ${formatCount(day.options.agents)} agents, ${formatCount(day.customers)} customers; ` +
        `busiest party ${bound.party}: ${k} live sessions at once`,
    );

    // Smallest pool with zero refusals: below the lower bound is impossible, so
    // start one below it (to see it refuse) and go up until nothing is refused.
    let vnumPool = Math.max(1, k - 1);
    for (;;) {
      const refusals = vnumDay(context, day, vnumPool);
      context.log(`vnum with ${vnumPool} numbers: ${formatCount(refusals)} refusals`);
      if (refusals === 0) break;
      if (vnumPool >= 2 * k) throw new Error(`vnum still refuses with ${vnumPool} numbers, twice the lower bound`);
      vnumPool++;
    }
    let sharedPool = k;
    while (sharedNumberRefusals(day, sharedPool) > 0) sharedPool++;
    context.log(`one shared number per session, first-fit: ${sharedPool} numbers`);

    const size =
      `${formatCount(day.orders.length)} orders in ${day.options.hours} h, ${formatCount(day.options.agents)} agents (≤ ${day.options.maxAgentOrders} orders in hand), ` +
      `${formatCount(day.customers)} customers (${day.options.parallelShare * 100}% parallel orders), grace ${day.options.graceMs / 60_000} min`;
    const name = 'smallest pool serving the day with zero refusals (createSession on SQLite)';
    const figures: Figure[] = [
      {
        name,
        unit: 'numbers',
        value: vnumPool,
        baseline: { name: 'lower bound: most live sessions of one party at once (k)', value: k },
        target: { text: '= lower bound', met: vnumPool === k },
        size,
      },
      { name, unit: 'numbers', value: vnumPool, baseline: { name: "Plivo's sizing rule for one shared number per session, 2k − 1", value: 2 * k - 1 }, size },
      { name, unit: 'numbers', value: vnumPool, baseline: { name: 'one shared number per session, first-fit, simulated on the same day', value: sharedPool }, size },
    ];
    return { figures };
  },
};

/** Run the day through the real createSession/releaseSession on a fresh SQLite file; count refused creates. */
function vnumDay(context: BenchContext, day: DeliveryDay, poolSize: number): number {
  const db = openDb(join(context.workDir, `day-${poolSize}.db`));
  try {
    addToPool(db, poolNumbers(poolSize).map((number) => ({ number })), { now: day.start });
    const parties = new Map<string, PartyInput>();
    const party = (number: string) => {
      let input = parties.get(number);
      if (!input) {
        const parsed = parseNumber(number);
        input = { number: parsed.e164, type: parsed.type };
        parties.set(number, input);
      }
      return input;
    };
    type Step = { at: number; create: boolean; index: number };
    const steps: Step[] = day.orders.flatMap((o, index) => [
      { at: o.createdAt, create: true, index },
      { at: o.releasedAt, create: false, index },
    ]);
    steps.sort((a, b) => a.at - b.at || a.index - b.index);
    const refused = new Set<number>();
    for (const step of steps) {
      const order = day.orders[step.index]!;
      if (!step.create) {
        if (!refused.has(step.index)) releaseSession(db, order.id, day.options.graceMs, step.at);
        continue;
      }
      try {
        createSession(db, {
          id: order.id,
          first: party(customerNumber(order.customer)),
          second: party(agentNumber(order.agent)),
          now: step.at,
        });
      } catch (e) {
        if (!isVnumError(e, ErrorCode.PoolExhausted)) throw e;
        refused.add(step.index);
      }
      if (step.index % 1000 === 0) {
        const violations = invariantViolations(db, step.at);
        if (violations.length > 0) throw new Error(`allocation invariant broken: ${JSON.stringify(violations.slice(0, 3))}`);
      }
    }
    return refused.size;
  } finally {
    db.close();
  }
}
