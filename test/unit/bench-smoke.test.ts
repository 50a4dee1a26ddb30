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

// Every benchmark but `asterisk`: that one needs root and the provisioned
// Asterisk root, and takes its turn on the shared instance, so its smoke run
// is an end-to-end test (test/e2e/bench-asterisk.e2e.test.ts).
const UNIT_BENCHMARKS = ['store', 'pool-size', 'routing', 'webhooks'];

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

it('says why the real-Asterisk benchmark cannot run when it is not root, and skips it', () => {
  // As root, run it as nobody: the same answer a developer's own account gets.
  const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
  const run = spawnSync(process.execPath, [RUNNER, 'asterisk', '--smoke'], { encoding: 'utf8', timeout: 30_000, cwd: tmpdir(), ...asNobody });
  expect(run.status, run.stderr).toBe(0);
  expect(run.stdout).toMatch(/^asterisk \(.*\)\n {2}skipped: not running as root/m);
});

it('refuses an unknown benchmark by name, listing the known ones', () => {
  const run = spawnSync(process.execPath, [RUNNER, 'nope', '--smoke'], { encoding: 'utf8', timeout: 30_000 });
  expect(run.status).toBe(1);
  expect(run.stderr).toMatch(/unknown benchmark nope: choose from store, pool-size, routing, webhooks, asterisk/);
});
