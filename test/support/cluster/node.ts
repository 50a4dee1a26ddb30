import { spawn, type ChildProcess } from 'node:child_process';
import type { ReplicaEvent, ReplicaStatus } from '../../../src/replica/consumer.js';
import type { PgTarget } from '../../../src/replica/stream.js';
import { atExit } from './cleanup.js';
import type { Host } from './netns.js';
import { repoPath } from '../repo.js';

/** A node's replica process (replica-worker.mjs), on this machine or inside a netns host. */

export const REPLICA_WORKER = repoPath('test/support/cluster/replica-worker.mjs');

export interface NodeConfig {
  db: string;
  target: PgTarget;
  node: string;
  pingIntervalMs?: number;
  staleAfterMs?: number;
  retryMaxMs?: number;
  commandTimeoutMs?: number;
  statusEveryMs?: number;
  applied?: boolean;
  crash?: { kind: 'in-apply' | 'after-commit'; at: number };
}

export interface AppliedLine {
  endLsn: string;
  commitTimeMs: number;
  receivedAtMs: number;
  appliedAtMs: number;
  changes: number;
}

export interface NodeProcess {
  child: ChildProcess;
  events: ReplicaEvent[];
  applied: AppliedLine[];
  /** The latest status line, if any yet. */
  status(): ReplicaStatus | undefined;
  stderr(): string;
  /** Resolves with the first status that satisfies `test`; rejects after `timeoutMs` or if the process ends first. */
  waitForStatus(test: (s: ReplicaStatus) => boolean, timeoutMs: number, what: string): Promise<ReplicaStatus>;
  /** Resolves when the process has exited: its signal or code. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (a clean stop) and wait; SIGKILL after 5 s. */
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export function startNode(config: NodeConfig, host?: Host): NodeProcess {
  const args = [REPLICA_WORKER, JSON.stringify(config)];
  const child = host
    ? host.spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: ReplicaEvent[] = [];
  const applied: AppliedLine[] = [];
  let latest: ReplicaStatus | undefined;
  let err = '';
  let buffered = '';
  const waiters = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const parsed = JSON.parse(line) as { event?: ReplicaEvent; status?: ReplicaStatus; applied?: AppliedLine };
      if (parsed.event) events.push(parsed.event);
      if (parsed.status) latest = parsed.status;
      if (parsed.applied) applied.push(parsed.applied);
    }
    for (const w of [...waiters]) w();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const w of [...waiters]) w();
    }),
  );
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  // Never outlive the test run (it would keep reconnecting to a cluster that is gone).
  const forget = atExit(() => {
    if (alive()) child.kill('SIGKILL');
  });
  void exited.then(forget);
  return {
    child,
    events,
    applied,
    status: () => latest,
    stderr: () => err,
    exited,
    waitForStatus(test, timeoutMs, what) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (latest && test(latest)) {
            done();
            resolve(latest);
          } else if (!alive()) {
            done();
            reject(new Error(`node ${config.node} exited before ${what}: ${err.slice(-2000)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`node ${config.node}: no ${what} within ${timeoutMs} ms; last status ${JSON.stringify(latest)}; events ${JSON.stringify(events.slice(-5))}; ${err.slice(-1000)}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop() {
      await stopChild(child, exited);
    },
    async kill() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** SIGTERM (a clean stop) and wait; SIGKILL after 5 s. Resolves with the exit code (null when killed). */
async function stopChild(child: ChildProcess, exited: Promise<unknown>): Promise<number | null> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
  return child.exitCode;
}

export interface ReplicaCommand {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<number | null>;
  /** SIGTERM, SIGKILL after 5 s; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** The built `vnum replica` as its unit runs it (settings from the environment), inside a host; `args` after the command. */
export function startReplicaCommand(host: Host, db: string, env: Record<string, string>, args: string[] = []): ReplicaCommand {
  const merged = { ...process.env, VNUM_LOG_LEVEL: undefined, VNUM_LOG_REDACT: undefined, VNUM_DB: undefined, ...env };
  // The built CLI by path: this module is also loaded by the benchmarks, outside vitest (which ../cli.js needs).
  const child = host.spawn(process.execPath, [repoPath('dist/src/cli/main.js'), '--db', db, 'replica', ...args], {
    env: Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const forget = atExit(() => child.kill('SIGKILL'));
  void exited.then(forget);
  return { child, stderr: () => err, exited, stop: () => stopChild(child, exited) };
}
