import { randomBytes } from 'node:crypto';
import { RUN_ENV, stopRun } from './run-marker.js';

/**
 * The test run's own processes (run-marker.ts): all of them stop with the run.
 * On SIGTERM or Ctrl-C vitest exits at once, without stopping its workers;
 * this exit hook does, and everything they started, so that no worker lives
 * on to take the ports lock and start a `vnum serve`, Asterisk or sipp that
 * nobody will stop. After a normal run it reports what a test left running.
 */
const registered = Symbol.for('vnum.testRun');
const slot = globalThis as { [registered]?: string };
// Once per vitest process, however many projects load this file.
const token = (slot[registered] ??= ((): string => {
  const own = `${process.pid}-${randomBytes(4).toString('hex')}`;
  process.env[RUN_ENV] = [process.env[RUN_ENV], own].filter(Boolean).join(' ');
  process.once('exit', () => stopRun(own));
  return own;
})());

/** vitest's own workers, which it stops itself once the run is over. */
const vitestWorker = (command: string): boolean => /\/vitest\/dist\/workers\//.test(command);

export function teardown(): void {
  const left = stopRun(token, { spare: vitestWorker });
  if (left.length > 0) console.warn(`tests left ${left.length} process(es) running, stopped now:\n  ${left.join('\n  ')}`);
}
