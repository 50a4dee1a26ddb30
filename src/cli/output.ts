/** How commands talk to people (aligned tables) and to scripts (--json, stable field names). */
import { isoDateTime } from '../time.js';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Text for people is printed with control characters escaped (see escapeControl): one line is one line. */
export function printTable(headers: string[], rows: Array<Array<string | number | null>>): void {
  const cells = rows.map((row) => row.map((cell) => (cell === null ? '-' : escapeControl(String(cell)))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ');
  process.stdout.write(`${[line(headers), ...cells.map(line)].join('\n')}\n`);
}

export function printLine(text: string): void {
  process.stdout.write(`${escapeControl(text)}\n`);
}

// C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the
// bidirectional controls that can make a line read as something else.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\\]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\' };

/**
 * Text safe to print on one terminal line: control characters become escapes
 * (`\n`, `\x1b`, `\u2028`), so input echoed in a message can neither start a
 * second line nor drive the terminal.
 */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, (ch) => {
    const named = NAMED[ch];
    if (named !== undefined) return named;
    const code = ch.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** How many items a text summary names before it says "and N more". */
export const ITEMS_SHOWN = 10;

/** A summary's list, one line per item, the first ITEMS_SHOWN of them and then how many more. */
export function shownLines<T>(items: readonly T[], line: (item: T) => string): string[] {
  const shown = items.slice(0, ITEMS_SHOWN).map(line);
  const more = items.length - ITEMS_SHOWN;
  return more > 0 ? [...shown, `  … and ${more} more (--json lists them all)`] : shown;
}

/** A notice or error on stderr: always one line, `vnum: ` first. */
export function printNotice(text: string): void {
  process.stderr.write(`vnum: ${escapeControl(text)}\n`);
}

/** The error contract: `vnum: <cause> [VNUM_CODE]`, one line. */
export function printError(code: string, message: string): void {
  printNotice(`${message} [${code}]`);
}

/** ISO without milliseconds, for tables. */
export function shortTime(ms: number | null): string | null {
  return ms === null ? null : isoDateTime(ms).replace(/\.\d{3}Z$/, 'Z');
}
