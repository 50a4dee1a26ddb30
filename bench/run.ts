// npm run bench -- [name...] [--smoke] [--report <file>] [--list]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BENCHMARKS } from './registry.js';
import { appendReport, formatValue, ratio, thisMachine, type ReportRow } from './report.js';

const DEFAULT_REPORT = fileURLToPath(new URL('../../docs/benchmarks.md', import.meta.url));

const USAGE = `usage: npm run bench -- [name...] [--smoke] [--report <file>] [--list]
  name       run only these benchmarks (default: all)
  --smoke    tiny sizes, seconds in all (CI); rows are written only with --report
  --report   the markdown file to append rows to (default: docs/benchmarks.md)
  --list     list the benchmarks and exit`;

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      allowPositionals: true,
      options: { smoke: { type: 'boolean' }, report: { type: 'string' }, list: { type: 'boolean' }, help: { type: 'boolean' } },
    });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 1;
  }
  const { values, positionals } = args;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.list) {
    for (const b of BENCHMARKS) process.stdout.write(`${b.name.padEnd(12)} ${b.description}\n`);
    return 0;
  }
  const unknown = positionals.filter((name) => !BENCHMARKS.some((b) => b.name === name));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark ${unknown.join(', ')}: choose from ${BENCHMARKS.map((b) => b.name).join(', ')}\n`);
    return 1;
  }
  const selected = positionals.length > 0 ? BENCHMARKS.filter((b) => positionals.includes(b.name)) : BENCHMARKS;
  const smoke = values.smoke ?? false;
  const report = values.report !== undefined ? resolve(values.report) : smoke ? undefined : DEFAULT_REPORT;
  const machine = thisMachine();
  process.stderr.write(`${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.cpu}, Node ${machine.node}${smoke ? ' (smoke sizes)' : ''}\n`);

  const rows: ReportRow[] = [];
  const failed: string[] = [];
  for (const benchmark of selected) {
    const workDir = mkdtempSync(join(tmpdir(), `vnum-bench-${benchmark.name}-`));
    const started = performance.now();
    try {
      const result = await benchmark.run({
        smoke,
        workDir,
        log: (line) => process.stderr.write(`[${benchmark.name}] ${line}\n`),
      });
      const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
      process.stdout.write(`\n${benchmark.name} (${((performance.now() - started) / 1000).toFixed(1)} s)\n`);
      if (result.skipped !== undefined) process.stdout.write(`  skipped: ${result.skipped}\n`);
      for (const figure of result.figures) {
        rows.push({ date, machine, asterisk: result.versions?.asterisk, benchmark: benchmark.name, smoke, figure });
        const verdict = figure.target ? `  target ${figure.target.text}: ${figure.target.met ? 'met' : 'MISSED'}` : '';
        process.stdout.write(
          `  ${figure.name}\n    vnum ${formatValue(figure.value, figure.unit)}   ` +
            `${figure.baseline.name} ${formatValue(figure.baseline.value, figure.unit)}   ratio ${ratio(figure)}${verdict}\n`,
        );
      }
    } catch (error) {
      failed.push(benchmark.name);
      process.stderr.write(`[${benchmark.name}] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    } finally {
      if (process.env.VNUM_BENCH_KEEP) process.stderr.write(`[${benchmark.name}] kept ${workDir} (VNUM_BENCH_KEEP)\n`);
      else rmSync(workDir, { recursive: true, force: true });
    }
  }
  if (report && rows.length > 0) {
    appendReport(report, rows);
    process.stderr.write(`\n${rows.length} rows appended to ${report}\n`);
  }
  if (failed.length > 0) {
    process.stderr.write(`failed: ${failed.join(', ')}\n`);
    return 2;
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 2;
  },
);
