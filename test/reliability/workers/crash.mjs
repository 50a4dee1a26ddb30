// The creating process of the crash campaign (test/reliability/crash.test.ts),
// killed with SIGKILL at a random moment. Opens (or creates) the database,
// loads the pool (idempotent), then creates sessions without end, releasing
// older ones, and reports each acknowledged operation on stdout with a
// synchronous write BEFORE starting the next one:
//   C <id> <first> <second> <first masked as> <second masked as>
//   R <id>
// so whatever the test read from the pipe was acknowledged before the kill.
import { openDb } from '../../../dist/src/store/db.js';
import { addToPool } from '../../../dist/src/pool/pool.js';
import { releaseSession } from '../../../dist/src/session/sessions.js';
import { createReported, out, seeded } from './common.mjs';

const [path, trialArg, poolArg, partiesArg] = process.argv.slice(2);
const trial = Number(trialArg);
const parties = Number(partiesArg);
const random = seeded(trial * 104729 + 7);

const db = openDb(path);
addToPool(
  db,
  Array.from({ length: Number(poolArg) }, (_, i) => ({ number: `+4420794600${String(i + 1).padStart(2, '0')}` })),
  { defaultCountry: 'GB', now: Date.now() },
);
out('READY');
const live = [];
for (let i = 0; ; i++) {
  const id = `t${trial}-${i}`;
  try {
    createReported(db, id, random, parties);
    live.push(id);
  } catch (e) {
    if (e?.code !== 'VNUM_POOL_EXHAUSTED') throw e;
  }
  if (live.length > 20) {
    const id = live.splice(random(live.length), 1)[0];
    // Half end now, half keep a grace period (still live when the test audits).
    releaseSession(db, id, random(2) === 0 ? 0 : 10 * 60_000, Date.now());
    out(`R ${id}`);
  }
}
