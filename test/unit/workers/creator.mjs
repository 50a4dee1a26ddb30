// A separate OS process creating and releasing sessions on a shared database,
// for the cross-process invariant test. Runs the built code (npm test builds first).
import { openDb } from '../../../dist/src/store/db.js';
import { createSession, releaseSession } from '../../../dist/src/session/sessions.js';
import { parseNumber } from '../../../dist/src/numbers/normalise.js';

const [path, worker, count, parties] = process.argv.slice(2);
const db = openDb(path);
const party = (n) => {
  const parsed = parseNumber(`+447911${String(n).padStart(6, '0')}`);
  return { number: parsed.e164, type: parsed.type };
};
let seed = Number(worker) * 7919 + 1;
const random = (n) => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed % n;
};
const acknowledged = [];
let exhausted = 0;
for (let i = 0; i < Number(count); i++) {
  const a = random(Number(parties));
  const b = (a + 1 + random(Number(parties) - 1)) % Number(parties);
  const id = `w${worker}-${i}`;
  try {
    createSession(db, { id, first: party(a), second: party(b), now: Date.now() });
    acknowledged.push(id);
  } catch (e) {
    if (e.code !== 'VNUM_POOL_EXHAUSTED') throw e;
    exhausted++;
  }
  if (acknowledged.length > 0 && random(2) === 0) {
    releaseSession(db, acknowledged[random(acknowledged.length)], 0, Date.now());
  }
}
process.stdout.write(JSON.stringify({ acknowledged, exhausted }));
