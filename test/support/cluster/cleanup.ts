/**
 * What a test run leaves on the machine (PostgreSQL clusters, network
 * namespaces) is undone on the way out: at exit, and on SIGINT, SIGTERM and
 * SIGHUP (then the signal is raised again, so the process still ends by
 * it). A run killed outright (SIGKILL) cannot clean up after itself: each
 * resource records its owner's pid, and the next run removes whatever a dead
 * owner left (see `ownerGone`).
 */

const tasks = new Set<() => void>();
let installed = false;

function runAll(): void {
  for (const task of [...tasks]) {
    tasks.delete(task);
    try {
      task();
    } catch {
      // best effort: the other tasks still run
    }
  }
}

/** Run `task` at exit unless the returned function is called first (which runs it now). */
export function atExit(task: () => void): () => void {
  if (!installed) {
    installed = true;
    process.on('exit', runAll);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(signal, () => {
        runAll();
        process.kill(process.pid, signal);
      });
    }
  }
  tasks.add(task);
  return () => {
    if (tasks.delete(task)) task();
  };
}

/** True when the process that owned a resource no longer exists. */
export function ownerGone(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
