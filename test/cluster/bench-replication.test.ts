/**
 * The benchmarks that need PostgreSQL (replication, replica-routing, api-cluster) at smoke
 * size, here rather than in test/unit/bench-smoke.test.ts: they keep working
 * and write their figures beside their baselines. Figures are read by people
 * from docs/benchmarks.md, never asserted.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { pgBlocker } from '../support/cluster/pg.js';
import { repoPath } from '../support/repo.js';
import { describeWhen } from '../support/suite.js';

const RUNNER = repoPath('dist-bench/bench/run.js');
describeWhen(pgBlocker(), 'npm run bench -- replication --smoke', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vnum-bench-replication-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('measures commit -> applied beside commit -> received and appends both rows', () => {
    const report = join(dir, 'benchmarks.md');
    const run = spawnSync(process.execPath, [RUNNER, 'replication', '--smoke', '--report', report], { encoding: 'utf8', timeout: 300_000 });
    expect(run.stderr).not.toMatch(/failed/);
    expect(run.status, run.stderr).toBe(0);
    const rows = readFileSync(report, 'utf8').split('\n').filter((l) => l.startsWith('| ') && l.includes('replication (smoke)'));
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatch(/replication delay p99: commit on PostgreSQL -> applied on the node replica \| [\d.,]+ ms \| commit -> received by the node \(no apply\), same transactions \| [\d.,]+ ms \|.*\| ≤ 250 ms \|/);
    expect(rows[1]).toMatch(/replication delay p50/);
  }, 300_000);

  it('routes from a replica built and followed by vnum replica beside the single box, and appends the rows', () => {
    const report = join(dir, 'replica-routing.md');
    const run = spawnSync(process.execPath, [RUNNER, 'replica-routing', '--smoke', '--report', report], { encoding: 'utf8', timeout: 300_000 });
    expect(run.stderr).not.toMatch(/failed/);
    expect(run.status, run.stderr).toBe(0);
    // The node's file was built by the real replica from the authority and held the single box's rows.
    expect(run.stderr).toMatch(/vnum replica built its file and follows the slot/);
    expect(run.stderr).toMatch(/10,000 sessions and 20,000 bridges in both/);
    const rows = readFileSync(report, 'utf8').split('\n').filter((l) => l.startsWith('| ') && l.includes('replica-routing (smoke)'));
    expect(rows.map((r) => r.split(' | ')[5])).toEqual([
      "routing decision p50 inside vnum serve on a cluster node's replica (route(): numbers, lookup)",
      "routing decision p99 inside vnum serve on a cluster node's replica (route(): numbers, lookup)",
      "routing decision p99.9 inside vnum serve on a cluster node's replica (route(): numbers, lookup)",
      'CPU (user + system) of vnum serve per FastAGI session on a cluster node (gate on, replica following), median of runs',
      'FastAGI sessions/s of vnum serve on a cluster node, median of runs',
      'store lookup (bridge join session) p50 on the replica file, in-process, vnum replica following into it',
      'store lookup (bridge join session) p99 on the replica file, in-process, vnum replica following into it',
      'store lookup (bridge join session) p50 on the replica file, in-process, vnum replica following into it, the same keys again',
      'store lookup (bridge join session) p99 on the replica file, in-process, vnum replica following into it, the same keys again',
      'store lookup (bridge join session) p50 on the replica file, in-process, vnum replica stopped, other keys',
      'store lookup (bridge join session) p99 on the replica file, in-process, vnum replica stopped, other keys',
    ]);
    expect(rows[1]).toMatch(/\| [\d.,]+ µs \| the same on the single box's file, same rounds \| [\d.,]+ µs \|.*\| ≤ 1.1× single box \|/);
  }, 300_000);

  it('creates through two vnum api --authority on PostgreSQL beside the single box API, and appends the rows', () => {
    const report = join(dir, 'api-cluster.md');
    const run = spawnSync(process.execPath, [RUNNER, 'api-cluster', '--smoke', '--report', report], { encoding: 'utf8', timeout: 300_000 });
    expect(run.stderr).not.toMatch(/failed/);
    expect(run.status, run.stderr).toBe(0);
    const rows = readFileSync(report, 'utf8').split('\n').filter((l) => l.startsWith('| ') && l.includes('api-cluster (smoke)'));
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatch(/session creates\/s through two vnum api --authority on PostgreSQL.* \| [\d.,]+ \/s \| the single box's vnum api on SQLite.* \| [\d.,]+ \/s \|.*\| ≥ 1× the single box \|/);
    expect(rows[1]).toMatch(/CPU per create in cluster mode \(both API processes \+ PostgreSQL\).* \| [\d.,]+ µs \|/);
  }, 300_000);
});
