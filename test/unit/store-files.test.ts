/**
 * The database file as `--db` names it (built CLI):
 * - whatever the path is (new, a dangling symlink, a symlink to a file, an
 *   existing empty file, with -wal/-shm beside it), the file vnum writes is
 *   owner-only or vnum refuses, naming the file and the fix; under umask 000
 *   too;
 * - read commands never create a database or a folder, and serve reads from
 *   a read-only file, from a folder the user cannot write, and from a
 *   database a writer holds open; they leave nothing behind;
 * - a database from a newer vnum says "upgrade vnum"; an older one is
 *   migrated by whoever can write it.
 * File modes bind only users other than root: as root these run as nobody;
 * a folder "the user cannot write" is 0555, which binds its owner too.
 */
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openDb } from '../../src/store/db.js';
import { vnum, type CliResult } from '../support/cli.js';
import { tempDirFor, UNPRIVILEGED } from '../support/nobody.js';

const A = '+447911000001';
const D = '+447911000002';
const DID = '+442079460001';

let dir: string;
beforeEach(() => {
  dir = tempDirFor('vnum-files-');
  chmodSync(dir, 0o755);
});
afterEach(() => {
  chmodSync(dir, 0o700);
  rmSync(dir, { recursive: true, force: true });
});

const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8).padStart(4, '0');
const at = (db: string, args: string[], as = {}) => vnum(['--db', db, ...args], {}, as);

function expectError(result: CliResult, code: string, message: RegExp, exit = 1): void {
  expect(result.stdout).toBe('');
  expect(result.stderr.split('\n')).toEqual([expect.stringMatching(message), '']);
  expect(result.stderr).toMatch(new RegExp(`^vnum: .*\\[${code}\\]\\n$`));
  expect(result.code).toBe(exit);
}

/** A database with a session, owned by the unprivileged user when the test is root. */
function populated(path: string): void {
  expect(at(path, ['pool', 'add', DID]).code).toBe(0);
  expect(at(path, ['session', 'create', 'o1', A, D]).code).toBe(0);
  if (UNPRIVILEGED.uid !== undefined) chownSync(path, UNPRIVILEGED.uid, UNPRIVILEGED.gid!);
}

describe('what vnum writes is owner-only, or it refuses (umask 000)', () => {
  const add = (db: string) => at(db, ['pool', 'add', DID], { umask: '000' });

  it('a new file, in new folders: 0600 in 0700 folders', () => {
    const db = join(dir, 'new', 'sub', 'vnum.db');
    expect(add(db).code).toBe(0);
    expect([mode(db), mode(join(dir, 'new')), mode(join(dir, 'new', 'sub'))]).toEqual(['0600', '0700', '0700']);
  });

  it('a dangling symlink: its target is created 0600 (SQLite alone made it 0644), the link stays a link', () => {
    // The target's folder exists (the case), or does not.
    for (const [name, target] of [['here.db', join(dir, 'real.db')], ['there.db', join(dir, 'data', 'real.db')]] as const) {
      const link = join(dir, name);
      symlinkSync(target, link);
      const added = add(link);
      expect(added.code, added.stderr).toBe(0);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(mode(target)).toBe('0600');
      // Every later command goes through the link to the same file.
      expect(JSON.parse(at(link, ['pool', 'list', '--json']).stdout)).toHaveLength(1);
    }
    expect(mode(join(dir, 'data'))).toBe('0700');
    expect(readdirSync(dir).sort()).toEqual(['data', 'here.db', 'real.db', 'there.db']);
  });

  it('a symlink to a file others can read: refused, naming the file and the fix; the file untouched', () => {
    const target = join(dir, 'open.db');
    writeFileSync(target, '', { mode: 0o644 });
    chmodSync(target, 0o644);
    symlinkSync(target, join(dir, 'link.db'));
    expectError(
      add(join(dir, 'link.db')),
      'VNUM_DATABASE_PERMISSIONS',
      new RegExp(`^vnum: database file ${target} \\(linked from .*link\\.db\\) is open to other users \\(mode 0644\\).*"chmod 600 ${target}"`),
    );
    expect(statSync(target).size).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['link.db', 'open.db']);
    // The fix it names works.
    chmodSync(target, 0o600);
    expect(add(join(dir, 'link.db')).code).toBe(0);
  });

  it('an existing empty file: used when owner-only, refused when not', () => {
    const db = join(dir, 'empty.db');
    writeFileSync(db, '');
    chmodSync(db, 0o640);
    expectError(add(db), 'VNUM_DATABASE_PERMISSIONS', /is open to other users \(mode 0640\)/);
    chmodSync(db, 0o600);
    expect(add(db).code).toBe(0);
    expect(mode(db)).toBe('0600');
  });

  it('-wal or -shm beside it that others can read: refused, naming that file', () => {
    const db = join(dir, 'vnum.db');
    expect(add(db).code).toBe(0);
    for (const suffix of ['-wal', '-shm']) {
      writeFileSync(db + suffix, '', { mode: 0o666 });
      chmodSync(db + suffix, 0o666);
      expectError(add(db), 'VNUM_DATABASE_PERMISSIONS', new RegExp(`database file ${db}${suffix} is open to other users \\(mode 0666\\).*"chmod 600 ${db}${suffix}"`));
      rmSync(db + suffix);
    }
  });

  it('a file this user cannot write: refused before SQLite leaves a read-only -wal and -shm behind', () => {
    const db = join(dir, 'vnum.db');
    populated(db);
    chmodSync(db, 0o400);
    chmodSync(dir, 0o777);
    expectError(at(db, ['pool', 'add', '+442079460002'], UNPRIVILEGED), 'VNUM_DATABASE_PERMISSIONS', /cannot write database .*permission denied/);
    expect(readdirSync(dir)).toEqual(['vnum.db']);
  });
});

describe('read commands', () => {
  const READS: string[][] = [
    ['pool', 'list'],
    ['session', 'list'],
    ['session', 'show', 'o1'],
    ['route', A, DID],
    ['stats'],
    ['calls'],
  ];

  it('never create a database or a folder: a mistyped --db is a clear user error', () => {
    const db = join(dir, 'typo', 'vnum.db');
    for (const args of [...READS, ['pool', 'retire', DID], ['session', 'release', 'o1']]) {
      expectError(at(db, args), 'VNUM_DATABASE_NOT_FOUND', new RegExp(`^vnum: no database at ${db}: check --db or VNUM_DB`));
    }
    const health = JSON.parse(at(db, ['health', '--port', '1', '--json']).stdout);
    expect(health.database).toMatchObject({ ok: false, error: expect.stringMatching(/^no database at /) });
    expect(existsSync(join(dir, 'typo'))).toBe(false);
    // A dangling link is not a database either.
    symlinkSync(join(dir, 'nowhere.db'), join(dir, 'link.db'));
    expectError(at(join(dir, 'link.db'), ['session', 'list']), 'VNUM_DATABASE_NOT_FOUND', /no database at .*nowhere\.db \(linked from .*link\.db\)/);
    expect(readdirSync(dir)).toEqual(['link.db']);
  });

  function readsWork(db: string, poolSize = 1): void {
    expect(JSON.parse(at(db, ['session', 'list', '--json'], UNPRIVILEGED).stdout).map((s: { id: string }) => s.id)).toEqual(['o1']);
    expect(JSON.parse(at(db, ['session', 'show', 'o1', '--json'], UNPRIVILEGED).stdout).id).toBe('o1');
    const masked = JSON.parse(at(db, ['session', 'show', 'o1', '--json'], UNPRIVILEGED).stdout).parties[1].maskedAs;
    expect(JSON.parse(at(db, ['route', A, masked, '--json'], UNPRIVILEGED).stdout)).toMatchObject({ status: 'BRIDGE', target: D });
    expect(JSON.parse(at(db, ['pool', 'list', '--json'], UNPRIVILEGED).stdout)).toHaveLength(poolSize);
    expect(JSON.parse(at(db, ['stats', '--json'], UNPRIVILEGED).stdout).sessions.active).toBe(1);
    expect(at(db, ['calls', '--json'], UNPRIVILEGED).code).toBe(0);
    const health = JSON.parse(at(db, ['health', '--port', '1', '--json'], UNPRIVILEGED).stdout);
    expect(health.database).toMatchObject({ ok: true, error: null });
  }

  it('serve a read-only file (0400) and leave no -wal or -shm behind; its owner can write again after chmod', () => {
    const db = join(dir, 'vnum.db');
    populated(db);
    chmodSync(db, 0o400);
    chmodSync(dir, 0o777);
    readsWork(db);
    expect(readdirSync(dir)).toEqual(['vnum.db']);
    chmodSync(db, 0o600);
    expect(at(db, ['pool', 'add', '+442079460002'], UNPRIVILEGED).code).toBe(0);
  });

  it('serve a database in a folder the user cannot write', () => {
    const db = join(dir, 'vnum.db');
    populated(db);
    chmodSync(dir, 0o555);
    readsWork(db);
    expect(readdirSync(dir)).toEqual(['vnum.db']);
  });

  it('see what a writer holding the database open has committed, even in a folder they cannot write', () => {
    const db = join(dir, 'vnum.db');
    populated(db);
    const writer = openDb(db);
    try {
      chmodSync(dir, 0o555);
      // Committed into the WAL, not yet into the database file.
      writer.prepare("INSERT INTO pool_number (number, country, state, added_at) VALUES ('+442079460002', 'GB', 'reserved', 1)").run();
      expect(statSync(`${db}-wal`).size).toBeGreaterThan(0);
      const pool = JSON.parse(at(db, ['pool', 'list', '--json'], UNPRIVILEGED).stdout);
      expect(pool.map((n: { state: string }) => n.state)).toEqual(['available', 'reserved']);
      readsWork(db, 2);
    } finally {
      writer.close();
    }
  });

  it('say "upgrade vnum" for a database from a newer vnum, and write nothing to it', () => {
    const db = join(dir, 'vnum.db');
    populated(db);
    const raw = new Database(db);
    raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    raw.pragma('journal_mode = DELETE');
    raw.close();
    const before = statSync(db).mtimeMs;
    for (const args of [['session', 'list'], ['pool', 'add', '+442079460002'], ['session', 'create', 'o2', A, '+447911000003']]) {
      expectError(at(db, args), 'VNUM_DATABASE_VERSION', new RegExp(`schema version ${MIGRATIONS.length + 1}, newer than this vnum understands \\(${MIGRATIONS.length}\\): upgrade vnum`));
    }
    expect(JSON.parse(at(db, ['health', '--port', '1', '--json']).stdout).database.error).toMatch(/upgrade vnum/);
    expect(statSync(db).mtimeMs).toBe(before);
    expect(readdirSync(dir)).toEqual(['vnum.db']);
  });

  it('migrate a database from an older vnum when the user can write it; say who can when not', () => {
    const db = join(dir, 'vnum.db');
    const raw = new Database(db);
    raw.exec(MIGRATIONS[0]!);
    raw.pragma('user_version = 1');
    raw.close();
    chmodSync(db, 0o600);
    if (UNPRIVILEGED.uid !== undefined) chownSync(db, UNPRIVILEGED.uid, UNPRIVILEGED.gid!);
    chmodSync(dir, 0o555);
    expectError(at(db, ['session', 'list'], UNPRIVILEGED), 'VNUM_DATABASE_VERSION', /schema version 1, older than this vnum's .*run by a user who can write it migrates it/);
    chmodSync(dir, 0o777);
    expect(at(db, ['session', 'list', '--json'], UNPRIVILEGED)).toMatchObject({ code: 0, stdout: '[]\n' });
    const migrated = new Database(db, { readonly: true });
    expect(migrated.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    migrated.close();
  });
});

it('the folder a read command was pointed at exists but holds another kind of file: VNUM_DATABASE, exit 2', () => {
  mkdirSync(join(dir, 'vnum.db'));
  expectError(at(join(dir, 'vnum.db'), ['session', 'list']), 'VNUM_DATABASE', /not a regular file/, 2);
});
