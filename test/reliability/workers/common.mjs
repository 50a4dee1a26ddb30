// What the campaign's writer processes share: one acknowledged line at a time
// on stdout, written before the next operation starts; parties +447911NNNNNN;
// a small seeded generator, so that a worker's run is the same every time.
import { writeSync } from 'node:fs';
import { parseNumber } from '../../../dist/src/numbers/normalise.js';
import { createSession } from '../../../dist/src/session/sessions.js';

export const out = (line) => writeSync(1, line + '\n');

export const party = (n) => {
  const parsed = parseNumber(`+447911${String(n).padStart(6, '0')}`);
  return { number: parsed.e164, type: parsed.type };
};

/** random(n): a whole number below n, from a linear congruential generator started at `seed`. */
export function seeded(seed) {
  return (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor((seed / 2147483648) * n);
  };
}

/** A session `id` between two parties drawn from `parties`; reported `C <id> <first> <second> <masks>` once committed. */
export function createReported(db, id, random, parties) {
  const a = random(parties);
  const b = (a + 1 + random(parties - 1)) % parties;
  const { session } = createSession(db, { id, first: party(a), second: party(b), now: Date.now() });
  const [first, second] = session.parties;
  out(`C ${id} ${first.number} ${second.number} ${first.maskedAs} ${second.maskedAs}`);
}
