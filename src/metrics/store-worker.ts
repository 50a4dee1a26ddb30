/**
 * A worker thread that reads the store's figures (./store-figures.ts) when
 * asked: the scans behind them take about a second and a half at 1,000,000
 * sessions, and better-sqlite3 is synchronous, so on the router's own thread
 * they would hold every call in flight. Each read opens the file the path
 * names now, so a database replaced under `vnum serve` is read as it is.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openDb, type Db } from '../store/db.js';
import { storeFigures } from './store-figures.js';

const { dbPath } = workerData as { dbPath: string };

parentPort!.on('message', () => {
  let db: Db | undefined;
  try {
    db = openDb(dbPath, { mode: 'write', busyTimeoutMs: 1_000 });
    parentPort!.postMessage({ figures: storeFigures(db, Date.now()) });
  } catch (e) {
    parentPort!.postMessage({ error: e instanceof Error ? e.message : String(e) });
  } finally {
    db?.close();
  }
});
