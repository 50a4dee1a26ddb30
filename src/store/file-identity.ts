import { statSync, watch as fsWatch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/**
 * Which file a path names right now (device and inode): undefined when nothing
 * is there. An open SQLite connection keeps reading the file it opened even
 * after that file is deleted or renamed away, so whoever holds a connection
 * for long (the router, the call log) compares this with the identity of the
 * file it opened, to follow a database replaced by `mv` (a restore) or removed.
 */
export function fileIdentity(path: string): string | undefined {
  if (path === ':memory:') return path;
  const stat = statSync(path, { throwIfNoEntry: false, bigint: true });
  return stat === undefined ? undefined : `${stat.dev}:${stat.ino}`;
}

export interface FileIdentityWatchOptions {
  /**
   * The longest a known identity is trusted without a stat, even when the
   * folder reported nothing: an event can be missed (an inotify queue
   * overflow, the folder itself replaced, a symlink's target changing
   * elsewhere). Default 250 ms.
   */
  maxAgeMs?: number;
  /** A monotonic clock in ms (tests). */
  now?: () => number;
  /** fs.watch, or a stand-in that throws (tests). */
  watch?: typeof fsWatch;
  /** Told once when the folder cannot be watched: every check is then a stat. */
  onWatchError?: (error: unknown) => void;
}

export interface FileIdentityWatch {
  /**
   * The identity of the file at the path (see fileIdentity): a stat only when
   * the folder reported an event for that name since the last one, when the
   * last one is older than maxAgeMs, or when the folder cannot be watched.
   * Throws what stat throws (e.g. EACCES).
   */
  current(): string | undefined;
  /** A stat now, whatever the watch says (e.g. just before opening the file). */
  check(): string | undefined;
  /** True while the folder is watched (false: a stat per check). */
  readonly watching: boolean;
  close(): void;
}

/**
 * fileIdentity, without a system call per use: an fs.watch (inotify) on the
 * folder marks the identity stale on any event naming the file (a rename over
 * it, a removal, a creation) or naming nothing (an overflow), and a stat
 * refreshes it at the next use; a stat also comes every maxAgeMs, so a missed
 * event is still caught. The one thing given up against a stat per use: a
 * change becomes visible when its event has been delivered, at the event
 * loop's next turn (within maxAgeMs if it never comes), not in the same tick
 * as the `mv`. If the folder cannot be watched (inotify limits, no folder),
 * every use is a stat, as before; watching is tried again when the identity
 * is seen to change (a recreated folder is a new inode to watch).
 */
export function watchFileIdentity(path: string, options: FileIdentityWatchOptions = {}): FileIdentityWatch {
  const maxAgeMs = options.maxAgeMs ?? 250;
  const now = options.now ?? (() => performance.now());
  const watch = options.watch ?? fsWatch;
  const name = basename(path);
  let watcher: FSWatcher | undefined;
  let warned = false;
  let stale = true;
  let checkedAt = 0;
  let known: string | undefined;
  let closed = false;

  const unwatch = (): void => {
    const w = watcher;
    watcher = undefined;
    try {
      w?.close();
    } catch {
      // already closed
    }
  };
  const failedToWatch = (error: unknown): void => {
    unwatch();
    stale = true;
    if (!warned) {
      warned = true;
      options.onWatchError?.(error);
    }
  };
  const arm = (): void => {
    if (closed || path === ':memory:') return;
    unwatch();
    try {
      const w = watch(dirname(path), { persistent: false }, (_event, filename) => {
        // Node gives null when the kernel named nothing (an overflow); a name
        // other than the file's (its -wal and -shm among them) changes nothing.
        if (filename === null || filename === name) stale = true;
      });
      w.on('error', failedToWatch);
      watcher = w;
    } catch (error) {
      failedToWatch(error);
    }
  };

  const check = (): string | undefined => {
    stale = false;
    checkedAt = now();
    const id = fileIdentity(path);
    if (id !== known) {
      known = id;
      // The file changed, maybe with its folder (a new inode to watch): watch
      // what is there now, and stat once more at the next use, for a change
      // between this stat and the new watch.
      if (id !== undefined) arm();
      stale = true;
    }
    return known;
  };

  return {
    current() {
      if (stale || watcher === undefined || now() - checkedAt >= maxAgeMs) return check();
      return known;
    },
    check,
    get watching() {
      return watcher !== undefined;
    },
    close() {
      closed = true;
      unwatch();
    },
  };
}
