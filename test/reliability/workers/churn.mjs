// One of the concurrency campaign's writers (test/reliability/concurrency.test.ts):
// creates `count` sessions on a shared database, releasing each one `window`
// creates later, and writes one line to stdout per acknowledged operation,
// synchronously and before the next one starts:
//   C <id> <first> <second> <first masked as> <second masked as>
//   R <id>
//   X <id>                  the pool had no valid number (a user error, not a failure)
//   E <code> <message>      anything else: must never happen
// Runs the built code (npm test builds first).
import { openDb } from '../../../dist/src/store/db.js';
import { releaseSession } from '../../../dist/src/session/sessions.js';
import { createReported, out, seeded } from './common.mjs';

const [path, workerArg, countArg, partiesArg, windowArg] = process.argv.slice(2);
const worker = Number(workerArg);
const count = Number(countArg);
const parties = Number(partiesArg);
const window = Number(windowArg);

const random = seeded(worker * 7919 + 17);
const fail = (e) => out(`E ${e?.code ?? 'UNKNOWN'} ${String(e?.message ?? e).replace(/\n/g, ' ')}`);

let db;
try {
  db = openDb(path);
} catch (e) {
  fail(e);
  process.exit(1);
}

const live = [];
const release = (id, graceMs) => {
  try {
    releaseSession(db, id, graceMs, Date.now());
    out(`R ${id}`);
  } catch (e) {
    fail(e);
  }
};

for (let i = 0; i < count; i++) {
  const id = `w${worker}-${i}`;
  try {
    createReported(db, id, random, parties);
    live.push(id);
  } catch (e) {
    if (e?.code === 'VNUM_POOL_EXHAUSTED') out(`X ${id}`);
    else fail(e);
  }
  // Most releases end the session now; some leave a short grace, still live for a moment.
  if (live.length > window) release(live.shift(), random(8) === 0 ? 1_000 : 0);
}
// The last ones stay live for a while: the audit afterwards checks live sessions too.
for (const id of live) release(id, 30 * 60_000);
db.close();
out('DONE');
