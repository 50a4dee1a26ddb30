/** How commands talk to people (aligned tables) and to scripts (--json, stable field names). */

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printTable(headers: string[], rows: Array<Array<string | number | null>>): void {
  const cells = rows.map((row) => row.map((cell) => (cell === null ? '-' : String(cell))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ');
  process.stdout.write(`${[line(headers), ...cells.map(line)].join('\n')}\n`);
}

export function printLine(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Milliseconds since the epoch -> ISO 8601 (UTC), or null. */
export function isoTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** ISO without milliseconds, for tables. */
export function shortTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
