import { readdirSync, readFileSync } from 'node:fs';

/**
 * Every process a test run starts carries the run's token in VNUM_TEST_RUN
 * (children inherit it; a run started inside a run adds its own after its
 * parent's). That is how a run finds what it started, whoever the parent of a
 * process is by then (an orphan's is init), and never touches another run's
 * processes: another worktree's suite, or a team member's.
 */
export const RUN_ENV = 'VNUM_TEST_RUN';

/** The live processes (not zombies) whose VNUM_TEST_RUN holds `token`, this process excepted. */
export function processesOfRun(token: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue; // gone, or another user's
    }
    const value = environ.split('\0').find((v) => v.startsWith(`${RUN_ENV}=`));
    if (value !== undefined && value.slice(RUN_ENV.length + 1).split(' ').includes(token)) pids.push(pid);
  }
  return pids;
}

/** A process's command line, for a report. */
export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ').trim();
  } catch {
    return '(gone)';
  }
}

function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

/**
 * Stops every process of the run, synchronously (it runs in an exit handler):
 * SIGTERM, so that a test worker stops its Asterisk and gives the ports lock
 * back, then SIGKILL for what is still there after `graceMs`. Processes that
 * appear meanwhile (a worker starting one as it dies) get the same. `spare`
 * leaves alone the processes it accepts. Returns the command lines of what it
 * stopped.
 */
export function stopRun(token: string, options: { graceMs?: number; spare?: (command: string) => boolean } = {}): string[] {
  const found = new Map<number, string>();
  const deadline = Date.now() + (options.graceMs ?? 5_000);
  for (;;) {
    const pids = processesOfRun(token).filter((pid) => !options.spare?.(commandOf(pid)));
    if (pids.length === 0) break;
    const late = Date.now() > deadline;
    for (const pid of pids) {
      if (!found.has(pid)) {
        found.set(pid, commandOf(pid));
        signal(pid, 'SIGTERM');
      } else if (late) {
        signal(pid, 'SIGKILL');
      }
    }
    if (Date.now() > deadline + 5_000) break;
    pause(50);
  }
  return [...found.values()];
}
