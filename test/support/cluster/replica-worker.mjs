// A cluster node's replica process for the tests (test/cluster/) and the
// replication benchmark: the built src/replica/ following PostgreSQL into a
// SQLite file, as a process that can be SIGKILLed or run inside a netns host.
// Runs the built code (npm test builds first).
//
//   node replica.mjs '<json>'
//     { db, target: {host, port, user, database}, node, pingIntervalMs?, staleAfterMs?, retryMaxMs?, commandTimeoutMs?,
//       statusEveryMs?, applied?: true,            one line per applied transaction
//       crash?: { kind: 'in-apply', at: n }        SIGKILL itself at the n-th row written inside an
//                                                   apply or snapshot transaction (before its commit)
//             | { kind: 'after-commit', at: n } }  ... right after the n-th transaction's SQLite commit,
//                                                   before PostgreSQL is told
//
// stdout, one JSON object a line, each written synchronously:
//   {"event": <a ReplicaEvent>}, {"status": <ReplicaStatus>}, {"applied": {...}}
// The file also gets test_counter_log: every value the replica gave meta's
// 'test_counter' row, written by triggers inside the apply transactions, so
// the log commits with the change or not at all (a change applied twice
// would show as a repeated value).
import { writeSync } from 'node:fs';
import { openDb } from '../../../dist/src/store/db.js';
import { startReplica } from '../../../dist/src/replica/consumer.js';
import { formatLsn } from '../../../dist/src/replica/lsn.js';

const config = JSON.parse(process.argv[2]);
const out = (object) => writeSync(1, JSON.stringify(object, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');

const db = openDb(config.db);
db.exec(`
  CREATE TABLE IF NOT EXISTS test_counter_log (seq INTEGER PRIMARY KEY, value INTEGER NOT NULL, how TEXT NOT NULL);
  CREATE TEMP TRIGGER counter_insert AFTER INSERT ON main.meta WHEN NEW.key = 'test_counter'
    BEGIN INSERT INTO test_counter_log (value, how) VALUES (NEW.value, 'insert'); END;
  CREATE TEMP TRIGGER counter_update AFTER UPDATE ON main.meta WHEN NEW.key = 'test_counter'
    BEGIN INSERT INTO test_counter_log (value, how) VALUES (NEW.value, 'update'); END;
`);

let rows = 0;
let transactions = 0;
if (config.crash?.kind === 'in-apply') {
  db.function('test_crash_point', () => {
    if (++rows === config.crash.at) process.kill(process.pid, 'SIGKILL');
    return null;
  });
  for (const table of ['pool_number', 'session', 'bridge', 'meta']) {
    for (const op of ['INSERT', 'UPDATE', 'DELETE']) {
      db.exec(`CREATE TEMP TRIGGER crash_${table}_${op} AFTER ${op} ON main.${table} BEGIN SELECT test_crash_point(); END;`);
    }
  }
}

const replica = startReplica({
  db,
  target: config.target,
  node: config.node,
  pingIntervalMs: config.pingIntervalMs,
  staleAfterMs: config.staleAfterMs,
  retryMaxMs: config.retryMaxMs,
  commandTimeoutMs: config.commandTimeoutMs,
  onEvent: (event) => out({ event }),
  onApplied: (t) => {
    transactions++;
    if (config.crash?.kind === 'after-commit' && transactions === config.crash.at) process.kill(process.pid, 'SIGKILL');
    if (config.applied) out({ applied: { ...t, endLsn: formatLsn(t.endLsn) } });
  },
});

const timer = setInterval(() => out({ status: replica.status() }), config.statusEveryMs ?? 200);

async function shutdown() {
  clearInterval(timer);
  await replica.stop();
  out({ status: replica.status() });
  db.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown());
