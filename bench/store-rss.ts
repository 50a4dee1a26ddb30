// Child process of the store benchmark: peak RSS of a fresh process that
// routes calls over a store, or (mode "bare") loads the same modules and
// opens nothing. Prints {"maxRssMb": n}.
import { readFileSync } from 'node:fs';
import { openDb } from '../src/store/db.js';
import { storeBridgeLookup } from '../src/routing/lookup.js';
import { decideRoute } from '../src/routing/decide.js';
import { bridgeKeys } from './seed.js';

const [mode, path, lookupsArg, nowArg] = process.argv.slice(2);
if (mode === 'store') {
  const db = openDb(path!);
  const lookup = storeBridgeLookup(db);
  let left = Number(lookupsArg);
  for (const key of bridgeKeys(db, 23)) {
    if (left-- === 0) break;
    decideRoute(key, Number(nowArg), lookup, { defaultCountry: 'GB' });
  }
  db.close();
}
// VmHWM, not getrusage's maxRSS: Linux carries ru_maxrss over from the parent across fork and exec.
const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
process.stdout.write(JSON.stringify({ maxRssMb: hwm ? Number(hwm[1]) / 1024 : process.resourceUsage().maxRSS / 1024 }));
