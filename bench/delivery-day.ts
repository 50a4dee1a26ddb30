import { prng } from './seed.js';

/**
 * A synthetic delivery day: orders arrive through the day with lunch and
 * dinner peaks, each goes to an agent on shift with fewer than
 * `maxAgentOrders` orders in hand, lasts 20-50 minutes, then its session is
 * released with a grace period. A few customers place a second or third order
 * while one is still running; some customers come back later in the day.
 */
export interface DayOptions {
  agents: number;
  maxAgentOrders: number;
  hours: number;
  /** Orders per agent-hour outside the peaks. */
  baseRate: number;
  graceMs: number;
  /** Share of orders placed by a customer who has an order running already. */
  parallelShare: number;
  /** Share of orders placed by a customer seen earlier in the day, with nothing running. */
  returningShare: number;
  seed: number;
}

export interface Order {
  id: string;
  customer: number;
  agent: number;
  createdAt: number;
  releasedAt: number;
}

export interface DeliveryDay {
  options: DayOptions;
  start: number;
  orders: Order[];
  customers: number;
  /** Orders no agent could take (every agent on shift at the cap): not sessions. */
  unassigned: number;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const MAX_CUSTOMER_ORDERS = 3;

export function deliveryDay(options: DayOptions): DeliveryDay {
  const random = prng(options.seed);
  const start = Date.UTC(2026, 0, 15, 8);
  const end = start + options.hours * HOUR;
  // Shifts of 8 hours (or the whole day if shorter) starting through the first third of the day.
  const shiftLength = Math.min(8 * HOUR, options.hours * HOUR);
  const shifts = Array.from({ length: options.agents }, () => {
    const from = start + Math.floor(random() * (options.hours * HOUR - shiftLength + 1));
    return { from, to: from + shiftLength };
  });
  const peak = (t: number) => {
    const hour = (t - start) / HOUR;
    const bump = (centre: number) => Math.exp(-(((hour - centre) / 0.75) ** 2));
    return 1 + 1.5 * bump(options.hours / 3) + 1.5 * bump((options.hours * 5) / 6);
  };
  const maxRate = (options.agents * options.baseRate * 2.5) / HOUR; // orders per ms, at the peaks' height

  const agentOrders: number[][] = Array.from({ length: options.agents }, () => []); // release times in hand
  const customerOrders = new Map<number, number[]>(); // customer -> release times of running orders
  const orders: Order[] = [];
  let customers = 0;
  let unassigned = 0;
  const running = (times: number[], t: number) => {
    for (let i = times.length - 1; i >= 0; i--) if (times[i]! <= t) times.splice(i, 1);
    return times.length;
  };
  // Poisson arrivals at the peak rate, thinned to the rate of the moment.
  for (let t = start; ; ) {
    t += Math.ceil(-Math.log(1 - random()) / maxRate);
    if (t >= end) break;
    if (random() * 2.5 > peak(t)) continue;
    const free = shifts.flatMap((shift, agent) =>
      shift.from <= t && t < shift.to && running(agentOrders[agent]!, t) < options.maxAgentOrders ? [agent] : [],
    );
    if (free.length === 0) {
      unassigned++;
      continue;
    }
    const agent = free[Math.floor(random() * free.length)]!;
    const customer = pickCustomer(random(), t);
    const releasedAt = t + 20 * MINUTE + Math.floor(random() * 30 * MINUTE);
    agentOrders[agent]!.push(releasedAt);
    const theirs = customerOrders.get(customer) ?? [];
    theirs.push(releasedAt);
    customerOrders.set(customer, theirs);
    orders.push({ id: `day-${orders.length}`, customer, agent, createdAt: t, releasedAt });
  }
  return { options, start, orders, customers, unassigned };

  function pickCustomer(roll: number, t: number): number {
    if (roll < options.parallelShare) {
      const candidates = [...customerOrders].filter(([, times]) => {
        const n = running(times, t);
        return n > 0 && n < MAX_CUSTOMER_ORDERS;
      });
      if (candidates.length > 0) return candidates[Math.floor(random() * candidates.length)]![0];
    } else if (roll < options.parallelShare + options.returningShare && customers > 0) {
      const customer = Math.floor(random() * customers);
      if (running(customerOrders.get(customer) ?? [], t) === 0) return customer;
    }
    return customers++;
  }
}

type Party = `a${number}` | `c${number}`;
const partiesOf = (o: Order): [Party, Party] => [`c${o.customer}`, `a${o.agent}`];

/**
 * The lower bound on any pool: the most sessions any one party has live at
 * once (a session is live from its creation until its grace ends; at that
 * instant it has ended, as vnum judges it). Every live session of a party
 * needs a number of its own for that party to dial.
 */
export function busiestParty(day: DeliveryDay): { party: string; sessions: number } {
  const events = new Map<Party, [number, number][]>();
  for (const order of day.orders) {
    for (const party of partiesOf(order)) {
      const list = events.get(party) ?? [];
      list.push([order.createdAt, 1], [order.releasedAt + day.options.graceMs, -1]);
      events.set(party, list);
    }
  }
  let best = { party: '', sessions: 0 };
  for (const [party, list] of events) {
    // Ends before starts at the same instant: half-open intervals.
    list.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let live = 0;
    for (const [, delta] of list) {
      live += delta;
      if (live > best.sessions) best = { party, sessions: live };
    }
  }
  return best;
}

/**
 * The single-shared-number scheme (Plivo's): one number per session, dialled
 * by both parties, so it must be free for both. First-fit over a pool of
 * `poolSize`; returns how many orders it had to refuse.
 */
export function sharedNumberRefusals(day: DeliveryDay, poolSize: number): number {
  const held = new Map<Party, { number: number; endsAt: number }[]>();
  let refusals = 0;
  for (const order of day.orders) {
    const t = order.createdAt;
    const busy = new Set<number>();
    for (const party of partiesOf(order)) {
      const live = (held.get(party) ?? []).filter((h) => h.endsAt > t);
      held.set(party, live);
      for (const h of live) busy.add(h.number);
    }
    let number = 0;
    while (number < poolSize && busy.has(number)) number++;
    if (number === poolSize) {
      refusals++;
      continue;
    }
    for (const party of partiesOf(order)) held.get(party)!.push({ number, endsAt: order.releasedAt + day.options.graceMs });
  }
  return refusals;
}
