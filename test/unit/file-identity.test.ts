import { EventEmitter } from 'node:events';
import { copyFileSync, existsSync, renameSync, rmSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fileIdentity, watchFileIdentity, type FileIdentityWatch } from '../../src/store/file-identity.js';
import { createCallRouter, type CallRouter } from '../../src/routing/service.js';
import { createSession } from '../../src/session/sessions.js';
import { openDb } from '../../src/store/db.js';
import { londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';
import { captureLog } from '../support/log.js';
import { sleep, until } from '../support/wait.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

function folder(): { dir: string; path: string } {
  const store = tempDb();
  store.db.close();
  cleanups.push(store.cleanup);
  return { dir: store.dir, path: store.path };
}

function watched(path: string, options: Parameters<typeof watchFileIdentity>[1] = {}): FileIdentityWatch {
  const w = watchFileIdentity(path, options);
  cleanups.push(() => w.close());
  return w;
}

/** Replace the file at `path` by a new one (a restore by `mv`). */
function replace(dir: string, path: string): void {
  const fresh = join(dir, `fresh-${Math.random()}`);
  writeFileSync(fresh, 'new');
  renameSync(fresh, path);
}

/** A watch stand-in that never reports anything (a lost event), and records close(). */
function silentWatch(): { watch: typeof watch; closed: () => number; emitter: () => EventEmitter | undefined } {
  let closed = 0;
  let last: EventEmitter | undefined;
  const stub = (() => {
    const emitter = new EventEmitter() as EventEmitter & { close(): void };
    emitter.close = () => void closed++;
    last = emitter;
    return emitter as unknown as FSWatcher;
  }) as unknown as typeof watch;
  return { watch: stub, closed: () => closed, emitter: () => last };
}

describe('watchFileIdentity', () => {
  it('gives what a stat gives, and sees a file replaced by mv once the folder event has come, without a stat per use', async () => {
    const { dir, path } = folder();
    const w = watched(path);
    const before = w.current();
    expect(before).toBe(fileIdentity(path));
    expect(w.watching).toBe(true);
    await sleep(20); // the one stat after the first sight
    w.current();
    replace(dir, path);
    // The same tick: no event yet and the last stat is fresh, so the old identity (no stat was made).
    expect(w.current()).toBe(before);
    await until(() => w.current() !== before, 200);
    expect(w.current()).toBe(fileIdentity(path));
    expect(w.current()).not.toBe(before);
  });

  it('sees the file removed, and back', async () => {
    const { dir, path } = folder();
    const w = watched(path);
    const before = w.current();
    renameSync(path, join(dir, 'kept')); // kept, so that its inode is not given to the next file
    await until(() => w.current() === undefined, 200);
    replace(dir, path);
    await until(() => w.current() !== undefined, 200);
    expect(w.current()).toBe(fileIdentity(path));
    expect(w.current()).not.toBe(before);
  });

  it('other files of the folder (-wal, -shm, a neighbour) do not make it stat again', async () => {
    const { dir, path } = folder();
    const w = watched(path, { now: () => 0 }); // a stopped clock: no stat for age
    const before = w.current();
    w.current(); // the stat after the first sight
    for (const name of ['vnum.db-wal', 'vnum.db-shm', 'vnum.db-journal', 'other.db']) writeFileSync(join(dir, name), 'x');
    await sleep(30); // their events have come
    replace(dir, path);
    expect(w.current()).toBe(before); // the same tick: had a neighbour's event made it look, this would be the new file
    await until(() => w.current() !== before, 200); // the file's own event does
    expect(w.current()).toBe(fileIdentity(path));
  });

  it('a missed event is caught by the stat that comes at the latest every maxAgeMs', () => {
    let clock = 1_000;
    const { dir, path } = folder();
    const stub = silentWatch();
    const w = watched(path, { now: () => clock, watch: stub.watch, maxAgeMs: 250 });
    const before = w.current();
    w.current();
    replace(dir, path);
    clock += 249;
    expect(w.current()).toBe(before);
    clock += 1;
    expect(w.current()).toBe(fileIdentity(path));
    expect(w.current()).not.toBe(before);
  });

  it('an event naming nothing (a queue overflow) makes it stat', () => {
    const clock = 1_000;
    const { dir, path } = folder();
    const stub = silentWatch();
    let listener: ((event: string, name: string | null) => void) | undefined;
    const capturing = ((dirName: string, options: unknown, l: typeof listener) => {
      listener = l;
      return stub.watch(dirName, options as never);
    }) as unknown as typeof watch;
    const w = watched(path, { now: () => clock, watch: capturing });
    const before = w.current();
    w.current();
    replace(dir, path);
    listener!('rename', 'other');
    expect(w.current()).toBe(before);
    listener!('rename', null);
    expect(w.current()).toBe(fileIdentity(path));
  });

  it('when the folder cannot be watched (e.g. inotify limits): told once, and a stat on every use', () => {
    const { dir, path } = folder();
    const errors: unknown[] = [];
    const failing = (() => {
      throw Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), { code: 'ENOSPC' });
    }) as unknown as typeof watch;
    const w = watched(path, { watch: failing, onWatchError: (e) => errors.push(e) });
    const before = w.current();
    expect(w.watching).toBe(false);
    replace(dir, path);
    expect(w.current()).not.toBe(before); // the same tick: it was a stat
    replace(dir, path);
    expect(w.current()).toBe(fileIdentity(path));
    expect(errors).toHaveLength(1);
  });

  it('a watcher that fails later: a stat per use, watching again once the file changes; close() closes the watcher', () => {
    const { dir, path } = folder();
    const stub = silentWatch();
    const errors: unknown[] = [];
    const w = watched(path, { watch: stub.watch, onWatchError: (e) => errors.push(e) });
    const before = w.current();
    expect(w.watching).toBe(true);
    stub.emitter()!.emit('error', new Error('EMFILE'));
    expect(w.watching).toBe(false);
    replace(dir, path);
    expect(w.current()).not.toBe(before); // the same tick: it was a stat
    expect(errors).toHaveLength(1);
    expect(w.watching).toBe(true); // a new file (perhaps a new folder): watched afresh
    const closed = stub.closed();
    w.close();
    expect(w.watching).toBe(false);
    expect(stub.closed()).toBe(closed + 1);
  });
});

describe('the router follows a database replaced by mv (watch on its folder)', () => {
  let router: CallRouter | undefined;
  afterEach(() => router?.close());

  it('bridges from the file at the path: after a restore by mv, told by the folder event', async () => {
    const store = tempDb();
    cleanups.push(store.cleanup);
    seedPool(store.db, londonDids(2));
    const { session } = createSession(store.db, { id: 'o1', first: party(mobile(1)), second: party(mobile(2)), now: 0 });
    const dialled = session.parties[1].maskedAs;
    // Everything into the main file: the -wal goes by path, and the router's connection would keep the old one beside the new file.
    store.db.pragma('wal_checkpoint(TRUNCATE)');
    const log = captureLog();
    // The folder event, not the periodic stat, is what tells it: with the clock that paces
    // that stat (performance.now) stopped from the start, the stat never comes due.
    vi.useFakeTimers({ toFake: ['performance'] });
    try {
      router = createCallRouter({ dbPath: store.path, logger: log.logger, defaultCountry: 'GB' });
      const call = { callerId: mobile(1), extension: dialled, dnid: '' };
      // Twice: after the first sight of a file it stats once more at the next use.
      expect(router.route(call).status).toBe('BRIDGE');
      expect(router.route(call).status).toBe('BRIDGE');
      // A restore by mv: an empty store (no pool, no sessions) takes the path; only the router has the old file open.
      store.db.close();
      const restored = join(store.dir, 'restored.db');
      openDb(restored).close();
      renameSync(restored, store.path);
      await until(() => router!.route(call).status === 'NOT_POOL', 1_000);
    } finally {
      vi.useRealTimers();
    }
    const call = { callerId: mobile(1), extension: dialled, dnid: '' };
    expect(log.records().some((r) => r.msg === 'database file replaced or removed: reopening')).toBe(true);
    expect(router.route(call).status).toBe('NOT_POOL');
  });

  it('a database deleted under it is not recreated: ERROR until a database is back at the path, then it bridges again', async () => {
    const store = tempDb();
    cleanups.push(store.cleanup);
    seedPool(store.db, londonDids(2));
    const { session } = createSession(store.db, { id: 'o1', first: party(mobile(1)), second: party(mobile(2)), now: 0 });
    store.db.pragma('wal_checkpoint(TRUNCATE)');
    store.db.close();
    const backup = join(store.dir, 'backup.db');
    copyFileSync(store.path, backup);
    const log = captureLog();
    router = createCallRouter({ dbPath: store.path, logger: log.logger, defaultCountry: 'GB', reopenDelayMs: 0 });
    const call = { callerId: mobile(1), extension: session.parties[1].maskedAs, dnid: '' };
    expect(router.route(call).status).toBe('BRIDGE');
    for (const suffix of ['', '-wal', '-shm']) rmSync(store.path + suffix, { force: true });
    await until(() => router!.route(call).status === 'ERROR', 1_000);
    for (let i = 0; i < 5; i++) expect(router.route(call).status).toBe('ERROR');
    expect(existsSync(store.path)).toBe(false);
    expect(log.records().some((r) => r.msg === 'store failed; answering ERROR until it reopens')).toBe(true);
    renameSync(backup, store.path);
    await until(() => router!.route(call).status === 'BRIDGE', 1_000);
  });
});
