import { rmSync } from 'node:fs';
import { openDb, type Db } from '../src/store/db.js';
import { addToPool } from '../src/pool/pool.js';
import type { E164 } from '../src/numbers/normalise.js';
import { invariantViolations } from '../src/session/invariant.js';
import { numberType, numberTypeCode } from '../src/numbers/type.js';

/**
 * A store as a large delivery company would hold it at its busiest, written
 * with direct inserts in big transactions (creating a million sessions one by
 * one would take minutes) but shaped like the real thing: agents with several
 * concurrent orders, customers now and then with parallel orders, some
 * sessions with a TTL, some released and in their grace period, and every
 * party's live bridges on distinct dialled numbers (the allocation invariant,
 * checked after seeding).
 *
 * All seeded sessions stay live for 24 hours after `now`, so another process
 * (the routing benchmark) can reuse the file with the real clock.
 */
export interface SeedOptions {
  sessions: number;
  poolSize: number;
  /** Most concurrent orders an agent holds. */
  maxAgentOrders?: number;
  now?: number;
  /** Deterministic workload: the same seed gives the same store. */
  seed?: number;
  log?: (line: string) => void;
}

export interface SeededStore {
  path: string;
  sessions: number;
  agents: number;
  customers: number;
  poolSize: number;
  /** The busiest party's concurrent sessions: the smallest pool that could hold this store. */
  busiestParty: number;
  now: number;
  seedMs: number;
}

const DAY = 24 * 3_600_000;

/** Virtual numbers: London's drama range +44 20 7946 0000-0999 (1,000 valid numbers). */
export function poolNumbers(count: number): E164[] {
  if (count > 1000) throw new Error('the drama range holds 1,000 numbers');
  return Array.from({ length: count }, (_, i) => `+44207946${String(i).padStart(4, '0')}` as E164);
}

// Real numbers from two UK mobile ranges that libphonenumber accepts in full.
// Multiplying by a number prime to 10^8 scatters consecutive parties over the range.
export function agentNumber(index: number): E164 {
  return `+4474${String((index * 48_271 + 12_345) % 100_000_000).padStart(8, '0')}` as E164;
}
export function customerNumber(index: number): E164 {
  return `+4475${String((index * 69_621 + 777) % 100_000_000).padStart(8, '0')}` as E164;
}

/** Order ids grow with time, as an order service's sequence or time-ordered ids do. */
export function orderId(n: number): string {
  return `ord-${n.toString(36).padStart(6, '0')}`;
}

/** Small deterministic PRNG (mulberry32): benchmarks must be repeatable. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export function seedStore(path: string, options: SeedOptions): SeededStore {
  const started = performance.now();
  const log = options.log ?? (() => {});
  const now = options.now ?? Date.now();
  const maxAgentOrders = options.maxAgentOrders ?? 8;
  const random = prng(options.seed ?? 42);
  for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });

  // Agents' concurrent loads, 1..maxAgentOrders, until they cover every session.
  const agentSlots: number[] = [];
  let agents = 0;
  while (agentSlots.length < options.sessions) {
    const load = 1 + Math.floor(random() * maxAgentOrders);
    for (let i = 0; i < load && agentSlots.length < options.sessions; i++) agentSlots.push(agents);
    agents++;
  }
  // Orders arrive interleaved, not agent by agent.
  for (let i = agentSlots.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [agentSlots[i], agentSlots[j]] = [agentSlots[j]!, agentSlots[i]!];
  }

  const pool = poolNumbers(options.poolSize);
  const db = openDb(path);
  addToPool(db, pool.map((number) => ({ number })), { now: now - DAY });
  // Seeding only: a big cache and no syncing; the benchmarks reopen the file with vnum's own settings.
  db.pragma('cache_size = -1000000');
  db.pragma('synchronous = OFF');

  const insertSession = db.prepare(
    `INSERT INTO session (sid, id, first_party, first_masked_as, second_party, second_masked_as, created_at, expires_at, released_at, ends_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertBridge = db.prepare(
    'INSERT INTO bridge (caller, dialled, sid, target, target_type, lent_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  // Every party is a UK mobile (both ranges are mobile in full), so every
  // bridge row carries the type createSession would have written.
  const MOBILE = numberTypeCode('mobile');
  for (const sample of [agentNumber(0), agentNumber(12_345), customerNumber(0), customerNumber(54_321)]) {
    if (numberType(sample) !== 'mobile') throw new Error(`seed party ${sample} is not a mobile number`);
  }

  const agentLive = new Int32Array(agents);
  const customerLive: number[] = [];
  let customers = 0;
  let busiestParty = 0;
  // Each party dials its j-th live session's counterparty on pool[(offset + j) % N]:
  // distinct for every j < N, which is the invariant.
  const dialledBy = (offset: number, j: number) => pool[(offset + j) % pool.length]!;
  const BATCH = 50_000;
  for (let from = 0; from < options.sessions; from += BATCH) {
    db.transaction(() => {
      for (let sid = from + 1; sid <= Math.min(from + BATCH, options.sessions); sid++) {
        const agent = agentSlots[sid - 1]!;
        // One order in ten comes from a customer with a live order already (up to three).
        let customer = customers;
        if (customers > 0 && random() < 0.1) {
          const candidate = customers - 1 - Math.floor(random() * Math.min(customers, 1000));
          if (customerLive[candidate]! < 3) customer = candidate;
        }
        if (customer === customers) customerLive[customers++] = 0;
        const jAgent = agentLive[agent]!++;
        const jCustomer = customerLive[customer]!++;
        busiestParty = Math.max(busiestParty, jAgent + 1, jCustomer + 1);
        if (jAgent >= pool.length || jCustomer >= pool.length) throw new Error('the pool is smaller than a party’s concurrent sessions');
        const A = customerNumber(customer);
        const D = agentNumber(agent);
        const aMaskedAs = dialledBy(agent * 389, jAgent); // what D dials to reach A
        const dMaskedAs = dialledBy(customer * 613, jCustomer); // what A dials to reach D
        const createdAt = now - Math.floor(random() * 3 * 3_600_000);
        const shape = random();
        let expiresAt: number | null = null;
        let releasedAt: number | null = null;
        let endsAt: number | null = null;
        if (shape < 0.25) {
          expiresAt = endsAt = now + DAY + Math.floor(random() * DAY);
        } else if (shape < 0.3) {
          releasedAt = now - Math.floor(random() * 600_000);
          endsAt = now + DAY;
        }
        insertSession.run(sid, orderId(sid), A, aMaskedAs, D, dMaskedAs, createdAt, expiresAt, releasedAt, endsAt);
        insertBridge.run(D, aMaskedAs, sid, A, MOBILE, createdAt, endsAt);
        insertBridge.run(A, dMaskedAs, sid, D, MOBILE, createdAt, endsAt);
      }
    })();
    log(`seeded ${Math.min(from + BATCH, options.sessions).toLocaleString('en')} sessions`);
  }
  const violations = invariantViolations(db, now);
  if (violations.length > 0) throw new Error(`seeding broke the allocation invariant: ${JSON.stringify(violations.slice(0, 3))}`);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.pragma('optimize');
  db.close();
  return {
    path,
    sessions: options.sessions,
    agents,
    customers,
    poolSize: pool.length,
    busiestParty,
    now,
    seedMs: performance.now() - started,
  };
}

/** Keys of live bridges, drawn at random over the whole store, without end: (caller, dialled) in E.164. */
export function* bridgeKeys(db: Db, seed = 7): Generator<{ caller: E164; dialled: E164 }> {
  const max = db.prepare('SELECT max(sid) FROM session').pluck().get() as number | null;
  if (!max) return;
  const random = prng(seed);
  const row = db.prepare<[number], { first_party: E164; first_masked_as: E164; second_party: E164; second_masked_as: E164 }>(
    'SELECT first_party, first_masked_as, second_party, second_masked_as FROM session WHERE sid = ?',
  );
  for (;;) {
    const s = row.get(1 + Math.floor(random() * max));
    if (!s) continue;
    // The first party dials the second's masked number, and the other way round.
    yield random() < 0.5 ? { caller: s.first_party, dialled: s.second_masked_as } : { caller: s.second_party, dialled: s.first_masked_as };
  }
}

export function sampleBridgeKeys(db: Db, count: number, seed = 7): { caller: E164; dialled: E164 }[] {
  const keys: { caller: E164; dialled: E164 }[] = [];
  for (const key of bridgeKeys(db, seed)) {
    if (keys.length === count) break;
    keys.push(key);
  }
  return keys;
}
