import { readdirSync, readFileSync } from 'node:fs';

/**
 * Every process a test run starts carries the run's token in VNUM_TEST_RUN
 * (children inherit it; a run started inside a run adds its own after its
 * parent's). That is how a run finds what it started, whoever the parent of a
 * process is by then (an orphan's is init), and never touches another run's
 * processes: another worktree's suite, or a team member's.
 */
export const RUN_ENV = 'VNUM_TEST_RUN';

export interface RunProcess {
  pid: number;
  /** Its command line, read just after its environment (never empty: see runProcesses). */
  command: string;
}

/**
 * The live processes whose VNUM_TEST_RUN holds `token`, this process
 * excepted, each with its command line. A process on its way out is not
 * one: once the kernel has taken its memory its environment and command line
 * read empty, and between the two reads it may get there; such a process
 * (vitest's own workers end just as the run's teardown looks: vitest starts
 * stopping them and waits for them only after the global teardown) would
 * otherwise be listed with no command line, so that nothing could tell it
 * for a vitest worker, and be reported as a process a test left running.
 * `proc`: where the process table is (a test's made-up one).
 */
export function runProcesses(token: string, proc = '/proc'): RunProcess[] {
  const found: RunProcess[] = [];
  for (const entry of readdirSync(proc)) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`${proc}/${pid}/environ`, 'latin1');
    } catch {
      continue; // gone, or another user's
    }
    const value = environ.split('\0').find((v) => v.startsWith(`${RUN_ENV}=`));
    if (value === undefined || !value.slice(RUN_ENV.length + 1).split(' ').includes(token)) continue;
    const command = commandIn(proc, pid);
    if (command === '' || command === GONE) continue; // exiting, or gone since
    found.push({ pid, command });
  }
  return found;
}

/** The pids of runProcesses. */
export function processesOfRun(token: string): number[] {
  return runProcesses(token).map((p) => p.pid);
}

const GONE = '(gone)';

/** A process's command line, for a report ('' once the process is exiting). */
export function commandOf(pid: number): string {
  return commandIn('/proc', pid);
}

function commandIn(proc: string, pid: number): string {
  try {
    return readFileSync(`${proc}/${pid}/cmdline`, 'latin1').split('\0').join(' ').trim();
  } catch {
    return GONE;
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
    const left = runProcesses(token).filter(({ command }) => !options.spare?.(command));
    if (left.length === 0) break;
    const late = Date.now() > deadline;
    for (const { pid, command } of left) {
      if (!found.has(pid)) {
        found.set(pid, command);
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
