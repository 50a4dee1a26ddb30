import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb, type Db } from '../../src/store/db.js';
import { addToPool } from '../../src/pool/pool.js';
import { parseNumber, type E164 } from '../../src/numbers/normalise.js';
import type { PartyInput } from '../../src/session/sessions.js';

/** A fresh database file in its own temp directory; `cleanup` removes both. */
export function tempDb(): { db: Db; path: string; dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'vnum-test-'));
  const path = join(dir, 'vnum.db');
  const db = openDb(path);
  return {
    db,
    path,
    dir,
    cleanup: () => {
      if (db.open) db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `count` London drama-range DIDs +4420794600NN, all valid E.164. */
export function londonDids(count: number, from = 1): string[] {
  return Array.from({ length: count }, (_, i) => `+4420794600${String(from + i).padStart(2, '0')}`);
}

export function seedPool(db: Db, numbers: string[], state: 'available' | 'reserved' | 'retired' = 'available'): void {
  addToPool(db, numbers.map((number) => ({ number, state })), { now: 0 });
}

/** Valid UK mobiles +447911NNNNNN for test parties. */
export function mobile(n: number): E164 {
  return `+447911${String(n).padStart(6, '0')}` as E164;
}

export function party(number: string, maskedAs?: string): PartyInput {
  const parsed = parseNumber(number);
  return { number: parsed.e164, type: parsed.type, maskedAs: maskedAs as E164 | undefined };
}

/** The store's own audit of the allocation invariant (from the sessions) and of the bridge rows: must always be empty. */
export { invariantViolations } from '../../src/session/invariant.js';

export interface LockHolder {
  child: ChildProcess;
  /** Resolves when it has exited (its transaction rolled back, its lock gone). */
  exited: Promise<number | null>;
}

/**
 * Another process holding a lock on the database: it opens `path`, runs `sql`
 * (e.g. BEGIN EXCLUSIVE), keeps the lock for `ms`, then exits. Resolves once
 * the lock is held.
 */
export async function holdLock(path: string, sql: string, ms: number): Promise<LockHolder> {
  const script = `
    const Database = require(${JSON.stringify(createRequire(import.meta.url).resolve('better-sqlite3'))});
    const db = new Database(${JSON.stringify(path)});
    db.exec(${JSON.stringify(sql)});
    process.stdout.write('held\\n');
    setTimeout(() => process.exit(0), ${ms});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    void exited.then((code) => reject(new Error(`the lock holder exited (${code}) before taking its lock`)));
  });
  return { child, exited };
}
