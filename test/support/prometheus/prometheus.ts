import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoPath } from '../repo.js';
import { freePort } from '../net.js';
import type { Blocker } from '../suite.js';
import { sleep } from '../wait.js';

/**
 * A real Prometheus (Debian's package, installed by ./install.sh) for the
 * tests: its own free loopback port and its own data folder in tmp, so that
 * several runs never meet (no fixed port: it needs no machine-wide lock),
 * started by hand (the package's service is never used) and stopped with
 * the test.
 */

const INSTALL = repoPath('test/support/prometheus/install.sh');

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Null when prometheus and promtool are here, or this run may install them (root): decided at collection time. */
export function prometheusBlocker(): Blocker {
  if (onPath('prometheus') && onPath('promtool')) return null;
  if (process.getuid?.() === 0 && onPath('apt-get')) return null;
  return 'prometheus is not installed and this run is not root (sudo test/support/prometheus/install.sh)';
}

/** Runs ./install.sh (a no-op once installed); throws with its message. */
export function installPrometheus(): void {
  const run = spawnSync('bash', [INSTALL], { encoding: 'utf8', timeout: 15 * 60_000 });
  if (run.status !== 0) throw new Error(`install.sh failed (${run.status ?? run.signal}):\n${run.stderr.slice(-4000)}`);
}

export interface ScrapeTarget {
  job: string;
  /** host:port */
  address: string;
}

export interface Prometheus {
  port: number;
  /** An instant query through Prometheus's HTTP API: its result vector. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  /** The scrape targets as Prometheus reports them. */
  targets(): Promise<Array<{ labels: Record<string, string>; health: string; lastError: string }>>;
  stop(): Promise<void>;
  log(): string;
}

export async function startPrometheus(targets: readonly ScrapeTarget[], options: { ruleFiles?: string[] } = {}): Promise<Prometheus> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vnum-prometheus-'));
  const port = await freePort();
  const jobs = targets.map((t) => `  - job_name: ${JSON.stringify(t.job)}\n    static_configs:\n      - targets: [${JSON.stringify(t.address)}]`);
  const rules = (options.ruleFiles ?? []).map((f) => `  - ${JSON.stringify(f)}`);
  writeFileSync(
    path.join(dir, 'prometheus.yml'),
    [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      ...(rules.length > 0 ? ['rule_files:', ...rules] : []),
      'scrape_configs:',
      ...jobs,
      '',
    ].join('\n'),
  );
  let log = '';
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    log = (log + chunk).slice(-20_000);
  });
  const base = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited (${child.exitCode}):\n${log}`);
    }
    try {
      if ((await fetch(`${base}/-/ready`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() - started > 20_000) {
      await stop();
      throw new Error(`prometheus not ready after 20 s:\n${log}`);
    }
    await sleep(100);
  }
  const api = async <T>(url: string): Promise<T> => {
    const response = await fetch(`${base}${url}`);
    const body = (await response.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${url}: ${body.error ?? response.status}`);
    return body.data;
  };
  return {
    port,
    query: async (expr) => (await api<{ result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result,
    targets: async () => (await api<{ activeTargets: Array<{ labels: Record<string, string>; health: string; lastError: string }> }>('/api/v1/targets')).activeTargets,
    stop,
    log: () => log,
  };
}
