import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { asNobody } from '../support/nobody.js';
import { repoPath } from '../support/repo.js';

// The built runner, as `npm run bench` runs it (npm test builds the bench
// too). Smoke sizes only: this keeps the benchmarks working; their figures are
// read from the report by people, never asserted here.
const RUNNER = repoPath('dist-bench/bench/run.js');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-bench-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

// Every benchmark but `asterisk`, `replication`, `replica-routing` and `api-cluster`: the first needs root and
// the provisioned Asterisk root, and takes its turn on the shared instance, so
// its smoke run is an end-to-end test (test/e2e/bench-asterisk.e2e.test.ts);
// the others need PostgreSQL, so their smoke runs are cluster tests
// (test/cluster/bench-replication.test.ts).
const UNIT_BENCHMARKS = ['store', 'pool-size', 'routing', 'pin', 'api', 'webhooks'];

it('runs the benchmarks at smoke size and appends rows with numbers beside their baselines', () => {
  const report = join(dir, 'benchmarks.md');
  const run = spawnSync(process.execPath, [RUNNER, ...UNIT_BENCHMARKS, '--smoke', '--report', report], { encoding: 'utf8', timeout: 120_000 });
  expect(run.stderr).not.toMatch(/failed/);
  expect(run.status).toBe(0);

  const lines = readFileSync(report, 'utf8').split('\n');
  const header = lines.findIndex((l) => l.startsWith('| date'));
  expect(header).toBeGreaterThan(-1);
  const columns = lines[header]!.split(' | ').map((c) => c.replace(/^\| |\s*\|$/g, '').trim());
  const rows = lines
    .slice(header + 2)
    .filter((l) => l.startsWith('| '))
    .map((l) => Object.fromEntries(l.slice(2, -2).split(' | ').map((cell, i) => [columns[i]!, cell])));
  expect(rows.length).toBeGreaterThan(0);
  const number = /^-?[\d,]+(\.\d+)?( |×|$)/;
  for (const row of rows) {
    expect(row['vnum']).toMatch(number);
    expect(row['baseline value']).toMatch(number);
    expect(row['benchmark']).toMatch(/\(smoke\)$/);
  }
  const benchmarks = new Set(rows.map((r) => r['benchmark']));
  expect(benchmarks).toEqual(new Set(UNIT_BENCHMARKS.map((b) => `${b} (smoke)`)));
  expect(rows.some((r) => /creates\/s/.test(r['figure']!))).toBe(true);
  expect(rows.some((r) => /bridge lookup .*p99/.test(r['figure']!))).toBe(true);
  expect(rows.some((r) => /smallest pool/.test(r['figure']!))).toBe(true);
  expect(rows.some((r) => /FastAGI sessions\/s/.test(r['figure']!) && /bare/.test(r['baseline']!))).toBe(true);
  expect(rows.some((r) => /routing decision p99 inside vnum serve/.test(r['figure']!) && r['target'] === '≤ 500 µs')).toBe(true);
  expect(rows.some((r) => /resident memory .*vnum serve/.test(r['figure']!))).toBe(true);
  expect(rows.some((r) => /creates\/s .*webhook outbox recording/.test(r['figure']!) && /recording off/.test(r['baseline']!))).toBe(true);
  expect(rows.some((r) => /webhook events delivered\/s/.test(r['figure']!) && /bare signed POSTs/.test(r['baseline']!))).toBe(true);
}, 180_000);

// As root, run it as nobody: the same answer a developer's own account gets;
// also when the test's TMPDIR is a folder nobody cannot enter.
for (const tmp of ['the test\'s TMPDIR', 'a TMPDIR only root can enter']) {
  it(`says why the real-Asterisk benchmark cannot run when it is not root, and skips it (${tmp})`, () => {
    let env = process.env;
    if (tmp !== 'the test\'s TMPDIR') {
      chmodSync(dir, 0o700);
      env = { ...process.env, TMPDIR: dir };
    }
    const nobody = asNobody(env);
    try {
      const run = spawnSync(process.execPath, [RUNNER, 'asterisk', '--smoke'], { encoding: 'utf8', timeout: 30_000, ...nobody.options });
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/^asterisk \(.*\)\n {2}skipped: not running as root/m);
    } finally {
      nobody.cleanup();
    }
  });
}

it('refuses an unknown benchmark by name, listing the known ones', () => {
  const run = spawnSync(process.execPath, [RUNNER, 'nope', '--smoke'], { encoding: 'utf8', timeout: 30_000 });
  expect(run.status).toBe(1);
  expect(run.stderr).toMatch(/unknown benchmark nope: choose from store, pool-size, routing, pin, api, webhooks, asterisk, replication, replica-routing, api-cluster/);
});
