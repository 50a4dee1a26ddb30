/**
 * The replication benchmark at smoke size (it needs PostgreSQL, so it runs
 * here rather than in test/unit/bench-smoke.test.ts): it keeps working and
 * writes its figures beside their baselines. Figures are read by people from
 * docs/benchmarks.md, never asserted.
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
});
