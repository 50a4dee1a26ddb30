import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname } from 'node:path';
import type { Figure } from './benchmark.js';

export interface Machine {
  cores: number;
  memoryGiB: number;
  cpu: string;
  node: string;
}

export function thisMachine(): Machine {
  const all = cpus();
  return {
    cores: all.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    cpu: (all[0]?.model ?? 'unknown').replace(/\s+/g, ' ').trim(),
    node: process.version,
  };
}

export interface ReportRow {
  date: string;
  machine: Machine;
  asterisk: string | undefined;
  benchmark: string;
  smoke: boolean;
  figure: Figure;
}

const HEADER = `# Benchmarks

Appended by \`npm run bench\` (bench/run.ts): one row per figure, each beside
its baseline measured in the same run on the same machine, because these
machines are shared and noisy; compare ratios, not raw figures, across rows.
Targets are each benchmark's own (bench/<name>.ts). \`--smoke\` rows are from tiny sizes (CI) and mean
nothing. Keep this table last in the file: the runner appends to it.

| date (UTC) | machine | Node | Asterisk | benchmark | figure | vnum | baseline | baseline value | vnum ÷ baseline | target | met | size |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
`;

export function formatValue(value: number, unit: string): string {
  if (!Number.isFinite(value)) return String(value);
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  const text = value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return unit === '×' ? `${text}×` : unit === 'numbers' ? text : `${text} ${unit}`;
}

export function ratio(figure: Figure): string {
  return figure.baseline.value === 0 ? '—' : (figure.value / figure.baseline.value).toFixed(2);
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

export function markdownRow(row: ReportRow): string {
  const { machine, figure } = row;
  return `| ${[
    row.date,
    `${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.cpu}`,
    machine.node,
    row.asterisk ?? '—',
    row.smoke ? `${row.benchmark} (smoke)` : row.benchmark,
    figure.name,
    formatValue(figure.value, figure.unit),
    figure.baseline.name,
    formatValue(figure.baseline.value, figure.unit),
    ratio(figure),
    figure.target?.text ?? '—',
    figure.target ? (figure.target.met ? 'yes' : '**no**') : '—',
    figure.size,
  ]
    .map(cell)
    .join(' | ')} |`;
}

/** Append rows to the report's table, creating the file with its header first if needed. */
export function appendReport(path: string, rows: ReportRow[]): void {
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, HEADER);
  }
  appendFileSync(path, rows.map((r) => `${markdownRow(r)}\n`).join(''));
}
