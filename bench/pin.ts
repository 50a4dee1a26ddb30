import { join } from 'node:path';
import { openDb } from '../src/store/db.js';
import { storeBridgeLookup } from '../src/routing/lookup.js';
import { decidePin } from '../src/routing/pin.js';
import { pinDigest, pinDigits, DEFAULT_PIN_GUESS_BOUND } from '../src/session/pin.js';
import { elapsedMicros, formatCount, percentile, type Benchmark, type Figure } from './benchmark.js';
import { prng, seedStore } from './seed.js';

/**
 * A PIN typed on a pool number, looked up in a store of 1,000,000 live
 * sessions with their 2,000,000 PINs (issue 14: "a point read; report its
 * p99"). The store is the store benchmark's seed, with every party's PIN
 * added as `vnum session create` issues it: on the number the party dials,
 * as long as the guessing arithmetic says for that number's live PINs, an
 * HMAC under the database's key. Timed: `byPin` (the HMAC, then one point
 * read on (dialled, digest) joined to the bridge and the session) and the
 * whole `decidePin`, beside the bridge lookup of a caller with a bridge
 * (the routing decision's point read) on the same file, interleaved.
 */
const POOL_SIZE = 1000;

const SIZES = {
  full: { sessions: 1_000_000, lookups: 100_000 },
  smoke: { sessions: 2_000, lookups: 2_000 },
};

interface Sample {
  dialled: string;
  pin: string;
  caller: string;
}

export const pinBenchmark: Benchmark = {
  name: 'pin',
  description: 'PIN lookup latency at 1,000,000 live sessions (2,000,000 PINs) against the bridge lookup on the same store',
  async run(context) {
    const sizes = context.smoke ? SIZES.smoke : SIZES.full;
    context.log(`seeding ${formatCount(sizes.sessions)} sessions`);
    const store = seedStore(join(context.workDir, 'pin.db'), { sessions: sizes.sessions, poolSize: POOL_SIZE, log: context.log });
    const db = openDb(store.path);
    const samples: Sample[] = [];
    const bridges: Array<{ caller: string; dialled: string }> = [];
    try {
      const started = performance.now();
      const key = db.prepare<[], Buffer>('SELECT key FROM pin_key').pluck().get()!;
      // Live PINs per number: both parties of every session, on the number each dials.
      const perNumber = db
        .prepare<[], { dialled: string; n: number }>('SELECT dialled, count(*) AS n FROM bridge GROUP BY dialled')
        .all();
      const digitsOf = new Map(perNumber.map((r) => [r.dialled, pinDigits(r.n - 1, DEFAULT_PIN_GUESS_BOUND)]));
      const random = prng(5);
      const insert = db.prepare('INSERT OR IGNORE INTO pin (dialled, digest, caller, sid) VALUES (?, ?, ?, ?)');
      const batch = db.prepare<[number, number], { sid: number; a: string; aMasked: string; d: string; dMasked: string }>(
        `SELECT sid, first_party AS a, first_masked_as AS aMasked, second_party AS d, second_masked_as AS dMasked
           FROM session WHERE sid BETWEEN ? AND ?`,
      );
      const every = Math.max(1, Math.floor((2 * sizes.sessions) / sizes.lookups));
      let n = 0;
      const STEP = 100_000;
      for (let from = 1; from <= store.sessions; from += STEP) {
        const sessions = batch.all(from, from + STEP - 1);
        db.transaction(() => {
          for (const s of sessions) {
            // The first party dials the second's masked number, and the other way round.
            for (const [caller, dialled] of [[s.a, s.dMasked], [s.d, s.aMasked]] as const) {
              const digits = digitsOf.get(dialled)!;
              const pin = String(Math.floor(random() * 10 ** digits)).padStart(digits, '0');
              insert.run(dialled, pinDigest(key, pin), caller, s.sid);
              if (n++ % every === 0 && samples.length < sizes.lookups) {
                samples.push({ dialled, pin, caller });
                bridges.push({ caller, dialled });
              }
            }
          }
        })();
        context.log(`PINs for ${formatCount(n)} parties`);
      }
      // The PINs went in directly, not through issuePin: each number's tally (pin_tally, src/session/pin.ts) counts them as issuePin would have.
      db.exec('INSERT INTO pin_tally (dialled, pins) SELECT dialled, count(*) FROM pin GROUP BY dialled');
      db.pragma('wal_checkpoint(TRUNCATE)');
      const pins = db.prepare<[], number>('SELECT count(*) FROM pin').pluck().get()!;
      context.log(`${formatCount(pins)} PINs in ${((performance.now() - started) / 1000).toFixed(1)} s; longest ${Math.max(...digitsOf.values())} digits`);
    } finally {
      db.close();
    }

    // Reopened as the router opens it: the store's own settings, a cold statement cache.
    const reader = openDb(store.path, { mode: 'read' });
    try {
      const lookup = storeBridgeLookup(reader);
      const now = store.now + 1;
      const count = samples.length;
      const byPin = new Float64Array(count);
      const decision = new Float64Array(count);
      const bridge = new Float64Array(count);
      let misses = 0;
      const warmUp = Math.ceil(count / 20);
      for (let i = -warmUp; i < count; i++) {
        const at = (i + count) % count;
        const s = samples[at]!;
        const b = bridges[at]!;
        const t1 = elapsedMicros(() => lookup.live(b.caller as never, b.dialled as never));
        const t2 = elapsedMicros(() => {
          // A clash of two random PINs on one number (INSERT OR IGNORE kept the first) finds the other party: rare, counted.
          if (lookup.byPin(s.dialled as never, s.pin) === undefined) misses++;
        });
        const t3 = elapsedMicros(() => decidePin({ dialled: s.dialled, pin: s.pin }, now, lookup));
        if (i >= 0) {
          bridge[i] = t1;
          byPin[i] = t2;
          decision[i] = t3;
        }
      }
      if (misses > count / 100) throw new Error(`${misses} of ${count} sampled PINs were not found`);
      for (const a of [byPin, decision, bridge]) a.sort();
      const size = `${formatCount(store.sessions)} live sessions, ${formatCount(store.sessions * 2)} PINs, ${POOL_SIZE} numbers, ${formatCount(count)} random PINs`;
      const figures: Figure[] = [];
      for (const p of [50, 99]) {
        figures.push({
          name: `PIN lookup (HMAC, point read, join) p${p} at ${formatCount(store.sessions)} live sessions`,
          unit: 'µs',
          value: percentile(byPin, p),
          baseline: { name: `bridge lookup of a caller with a bridge p${p}`, value: percentile(bridge, p) },
          size,
        });
      }
      figures.push({
        name: `decidePin (the dialled number normalised, in the pool, the PIN looked up and judged) p99 at ${formatCount(store.sessions)} live sessions`,
        unit: 'µs',
        value: percentile(decision, 99),
        baseline: { name: 'bridge lookup of a caller with a bridge p99', value: percentile(bridge, 99) },
        size,
      });
      return { figures };
    } finally {
      reader.close();
    }
  },
};
