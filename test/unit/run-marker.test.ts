/**
 * How a test run finds the processes it started (test/support/run-marker.ts):
 * by the token in their VNUM_TEST_RUN, each with its command line, and never
 * a process on its way out. Such a process (a vitest worker ending as the
 * run's teardown looks) reads with an empty command line; listed, it could
 * not be told for a vitest worker and was reported as "tests left 1
 * process(es) running" with nothing after it.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RUN_ENV, runProcesses, stopRun } from '../support/run-marker.js';

describe('the processes of a run', () => {
  let proc: string;
  beforeEach(() => {
    proc = mkdtempSync(join(tmpdir(), 'vnum-proc-'));
  });
  afterEach(() => rmSync(proc, { recursive: true, force: true }));

  /** A made-up /proc entry: its environment and command line as the kernel shows them (NUL-separated). */
  function entry(pid: number | string, env: string[], argv: string[]): void {
    mkdirSync(join(proc, String(pid)));
    writeFileSync(join(proc, String(pid), 'environ'), env.map((v) => `${v}\0`).join(''));
    writeFileSync(join(proc, String(pid), 'cmdline'), argv.map((v) => `${v}\0`).join(''));
  }

  it('lists those carrying the token, with their command lines; not another run\'s, not one that is exiting', () => {
    entry(101, ['PATH=/bin', `${RUN_ENV}=run-a`], ['node', '/repo/node_modules/vitest/dist/workers/forks.js']);
    entry(102, [`${RUN_ENV}=outer run-a`], ['node', 'dist/src/cli/main.js', 'api']);
    entry(103, [`${RUN_ENV}=run-b`], ['sleep', '30']);
    entry(104, ['PATH=/bin'], ['sleep', '30']);
    // its memory taken as it exits: the kernel reads its command line (and, a moment later, its environment) empty
    entry(105, [`${RUN_ENV}=run-a`], []);
    entry('self', [`${RUN_ENV}=run-a`], ['node']);
    expect(runProcesses('run-a', proc).sort((a, b) => a.pid - b.pid)).toEqual([
      { pid: 101, command: 'node /repo/node_modules/vitest/dist/workers/forks.js' },
      { pid: 102, command: 'node dist/src/cli/main.js api' },
    ]);
  });

  it('finds a real process of the run and stops it, naming its command line', async () => {
    const token = `test-${process.pid}-${Date.now()}`;
    const child = spawn('sleep', ['30'], { env: { ...process.env, [RUN_ENV]: token }, stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    try {
      for (let i = 0; i < 100 && runProcesses(token).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(runProcesses(token)).toEqual([{ pid: child.pid, command: 'sleep 30' }]);
      expect(stopRun(token)).toEqual(['sleep 30']);
      expect(await exited).toBe('SIGTERM');
      expect(runProcesses(token)).toEqual([]);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
