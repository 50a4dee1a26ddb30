import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, expect, it } from 'vitest';

// The built runner, as `npm run bench` runs it (npm test builds first). Smoke
// sizes only: this keeps the benchmarks working; their figures are read from
// the report by people, never asserted here.
const RUNNER = fileURLToPath(new URL('../../dist/bench/run.js', import.meta.url));

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-bench-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it('runs every benchmark at smoke size and appends rows with numbers beside their baselines', () => {
  const report = join(dir, 'benchmarks.md');
  const run = spawnSync(process.execPath, [RUNNER, '--smoke', '--report', report], { encoding: 'utf8', timeout: 120_000 });
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
  expect(benchmarks).toEqual(new Set(['store (smoke)', 'pool-size (smoke)']));
  expect(rows.some((r) => /creates\/s/.test(r['figure']!))).toBe(true);
  expect(rows.some((r) => /bridge lookup .*p99/.test(r['figure']!))).toBe(true);
  expect(rows.some((r) => /smallest pool/.test(r['figure']!))).toBe(true);
}, 180_000);

it('refuses an unknown benchmark by name, listing the known ones', () => {
  const run = spawnSync(process.execPath, [RUNNER, 'nope', '--smoke'], { encoding: 'utf8', timeout: 30_000 });
  expect(run.status).toBe(1);
  expect(run.stderr).toMatch(/unknown benchmark nope: choose from store, pool-size/);
});
