/**
 * `npm run bench -- asterisk --smoke` keeps working: the real-Asterisk
 * benchmark (bench/asterisk.ts) places a few calls at a low rate through vnum
 * and through the static baseline, and writes its rows. It needs root and the
 * provisioned Asterisk root, like the rest of this suite, so it lives here and
 * not in test/unit/bench-smoke.test.ts. Its figures mean nothing at this size.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { repoRoot } from '../support/repo.js';
import { e2eSuite } from '../support/suite.js';

const RUNNER = path.join(repoRoot, 'dist-bench/bench/run.js');

e2eSuite('npm run bench -- asterisk --smoke', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vnum-bench-asterisk-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('calls through vnum and through the static dialplan, and reports both with the Asterisk version', () => {
    const report = path.join(dir, 'benchmarks.md');
    const run = spawnSync(process.execPath, [RUNNER, 'asterisk', '--smoke', '--report', report], {
      encoding: 'utf8',
      timeout: 240_000,
    });
    expect(run.stderr, run.stderr).not.toMatch(/^(\[asterisk\] )?failed/m); // the runner's own word for a benchmark that threw
    expect(run.status).toBe(0);
    expect(run.stdout).not.toMatch(/skipped/);
    const rows = readFileSync(report, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('| ') && l.includes('| asterisk (smoke) |'))
      .map((l) => l.slice(2, -2).split(' | '));
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const row of rows) expect(row[3]).toMatch(/^22\.\d+/); // the Asterisk column
    expect(rows.some((r) => /highest call rate with zero failed calls/.test(r[5]!) && /static dialplan/.test(r[7]!))).toBe(true);
    expect(rows.some((r) => /INVITE→200/.test(r[5]!))).toBe(true);
  }, 300_000);
});
