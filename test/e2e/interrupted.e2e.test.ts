/**
 * An interrupted test run leaves nothing behind: a vitest run of e2e files is
 * stopped (SIGTERM to vitest, or Ctrl-C: SIGINT to its process group) at
 * moments that matter, and afterwards no process it started is left (no
 * worker, `vnum serve`, Asterisk or sipp) and no /proc is mounted in an
 * Asterisk root.
 *
 * The run's processes are told apart from everyone else's by the token in
 * their VNUM_TEST_RUN (test/support/run-marker.ts): other team members' runs
 * on this machine are never looked at, let alone stopped. The fixed ports are
 * theirs too: the runs started here wait for the ports lock like any other.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { asteriskRoot } from '../support/asterisk/paths.js';
import { releasePortsLock, takePortsLock } from '../support/asterisk/ports-lock.js';
import { repoRoot } from '../support/repo.js';
import { commandOf, processesOfRun, RUN_ENV, stopRun } from '../support/run-marker.js';
import { e2eSuite } from '../support/suite.js';
import { sleep } from '../support/wait.js';

const VITEST = path.join(repoRoot, 'node_modules/vitest/vitest.mjs');

interface NestedRun {
  token: string;
  child: ChildProcess;
  exited: Promise<void>;
  output(): string;
}

/** `vitest run <files>` of this checkout, with CI=true, in a process group of its own, its processes marked with a new token. */
function startRun(files: string[], env: NodeJS.ProcessEnv = {}): NestedRun {
  const token = `interrupted-${randomBytes(4).toString('hex')}`;
  const child = spawn(process.execPath, [VITEST, 'run', ...files], {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CI: 'true', ...env, [RUN_ENV]: [process.env[RUN_ENV], token].filter(Boolean).join(' ') },
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { token, child, exited, output: () => output };
}

/** Waits until the run has a process whose command line matches each of `patterns` at once. */
async function untilRunning(run: NestedRun, patterns: RegExp[], what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const commands = processesOfRun(run.token).map(commandOf);
    if (patterns.every((p) => commands.some((c) => p.test(c)))) return;
    if (run.child.exitCode !== null) throw new Error(`the run ended before ${what}:\n${run.output().slice(-3000)}`);
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs / 1000} s:\n${run.output().slice(-3000)}`);
    await sleep(20);
  }
}

/** Stops the run as a user would: SIGTERM to vitest, or Ctrl-C in its terminal (SIGINT to its process group). */
async function stop(run: NestedRun, how: 'SIGTERM' | 'Ctrl-C'): Promise<void> {
  if (how === 'SIGTERM') run.child.kill('SIGTERM');
  else process.kill(-run.child.pid!, 'SIGINT');
  const late = setTimeout(() => run.child.kill('SIGKILL'), 30_000);
  await run.exited;
  clearTimeout(late);
}

/**
 * Once vitest has exited: every process of the run seen alive within
 * `watchMs` is a leftover. Whatever is found is stopped afterwards, so that
 * this test leaves nothing either.
 */
async function leftovers(run: NestedRun, watchMs = 3_000): Promise<string[]> {
  const seen = new Map<number, string>();
  const end = Date.now() + watchMs;
  while (Date.now() < end) {
    for (const pid of processesOfRun(run.token)) if (!seen.has(pid)) seen.set(pid, commandOf(pid));
    await sleep(50);
  }
  stopRun(run.token);
  return [...seen].map(([pid, command]) => `${pid} ${command}`);
}

/** Mount points at or below `dir` in this mount namespace (the host's). */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
}

const CALLS = 'test/e2e/routing.e2e.test.ts';
const SIPP = /(^|\/)sipp /;
const ASTERISK = /asterisk -f/;
const SERVE = /dist\/src\/cli\/main\.js .*serve/;

e2eSuite('an interrupted test run leaves nothing behind', () => {
  // The runs started here need the ports lock: this process must not be keeping it from an earlier file.
  beforeAll(() => releasePortsLock());

  it('stopped while its worker waits for the ports lock: no worker takes the lock afterwards to start anything', async () => {
    const release = await takePortsLock();
    let run: NestedRun | undefined;
    try {
      run = startRun([CALLS]);
      await untilRunning(run, [/vitest\/dist\/workers\//], 'test worker', 60_000);
      // Collection and provisioning (cached) take a few seconds; then it waits for the lock held here.
      await sleep(8_000);
      await stop(run, 'SIGTERM');
    } finally {
      release();
    }
    // The lock is free now: an orphaned worker would take it and start Asterisk, vnum serve, sipp.
    const left = await leftovers(run!, 10_000);
    expect(left, run!.output().slice(-3000)).toEqual([]);
  }, 15 * 60_000);

  for (const how of ['SIGTERM', 'Ctrl-C'] as const) {
    it(`${how} during an e2e file, a call in progress: no vnum serve, Asterisk or sipp left, no /proc mounted in the root`, async () => {
      const run = startRun([CALLS]);
      // The ports may be another run's for a while: this one waits its turn like any other.
      await untilRunning(run, [SIPP, ASTERISK, SERVE], 'call in progress (sipp, Asterisk and vnum serve at once)', 12 * 60_000);
      await stop(run, how);
      expect(await leftovers(run), run.output().slice(-3000)).toEqual([]);
      // With the lock no Asterisk of anyone's runs in the root: a /proc there would be a leftover.
      const release = await takePortsLock();
      try {
        expect(mountsUnder(path.join(asteriskRoot, 'proc'))).toEqual([]);
      } finally {
        release();
      }
    }, 15 * 60_000);
  }

  it('Ctrl-C while an Asterisk root is being built: no debootstrap or provision.sh left, nothing mounted in the unfinished root', async () => {
    // A root that does not exist yet: provisioning it takes minutes, most of it debootstrap.
    const cache = mkdtempSync(path.join(tmpdir(), 'vnum-interrupted-root-'));
    const root = path.join(cache, 'asterisk-root');
    try {
      const run = startRun(['test/e2e/exposure.e2e.test.ts'], { VNUM_ASTERISK_ROOT: root });
      await untilRunning(run, [/debootstrap/], 'debootstrap', 5 * 60_000);
      await sleep(2_000);
      await stop(run, 'Ctrl-C');
      expect(await leftovers(run), run.output().slice(-3000)).toEqual([]);
      expect(mountsUnder(cache)).toEqual([]);
    } finally {
      // Never a recursive delete through a mounted /proc.
      for (const point of mountsUnder(cache).reverse()) spawnSync('umount', ['-l', point]);
      rmSync(cache, { recursive: true, force: true });
    }
  }, 10 * 60_000);
});
