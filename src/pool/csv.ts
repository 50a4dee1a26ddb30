import { ErrorCode, VnumError } from '../errors.js';
import type { PoolEntryInput, PoolState } from './pool.js';
import { POOL_STATES } from './pool.js';
import { columnKey, COUNTRY_NAMES as COUNTRY_HEADERS, NUMBER_NAMES as NUMBER_HEADERS, STATE_NAMES as STATE_HEADERS } from './columns.js';

export interface CsvRow {
  line: number;
  cells: string[];
}

/** RFC 4180 records: quoted fields, doubled quotes, CRLF or LF. Blank lines and `#` comments are skipped. */
export function parseCsvRows(text: string): CsvRow[] {
  const rows: CsvRow[] = [];
  let cells: string[] = [];
  let cell = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  let fieldStarted = false;
  const endRow = () => {
    cells.push(cell);
    const blank = cells.length === 1 && cells[0]!.trim() === '';
    const comment = !fieldStarted && cells[0]!.trimStart().startsWith('#');
    if (!blank && !comment) rows.push({ line: rowLine, cells: cells.map((c) => c.trim()) });
    cells = [];
    cell = '';
    fieldStarted = false;
  };
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  for (let i = 0; i < src.length; i++) {
    const ch = src[i]!;
    if (quoted) {
      if (ch === '"') {
        if (src[i + 1] === '"') {
          cell += '"';
          i++;
        } else {
          quoted = false;
        }
      } else {
        if (ch === '\n') line++;
        cell += ch;
      }
      continue;
    }
    if (ch === '"' && cell.trim() === '') {
      quoted = true;
      fieldStarted = true;
      cell = '';
    } else if (ch === ',') {
      cells.push(cell);
      cell = '';
    } else if (ch === '\n') {
      if (cell.endsWith('\r')) cell = cell.slice(0, -1);
      endRow();
      line++;
      rowLine = line;
    } else {
      cell += ch;
    }
  }
  if (quoted) throw new VnumError(ErrorCode.InvalidCsv, `line ${rowLine}: unterminated quoted field`);
  if (cell !== '' || cells.length > 0) {
    if (cell.endsWith('\r')) cell = cell.slice(0, -1);
    endRow();
  }
  return rows;
}

/**
 * A provider's export: columns number, optional country, optional state, in
 * that order, or in any order under a header row naming them.
 */
export function parsePoolCsv(text: string): Array<PoolEntryInput & { line: number }> {
  const rows = parseCsvRows(text);
  if (rows.length === 0) return [];
  let columns = { number: 0, country: 1, state: 2 };
  const first = rows[0]!;
  // A header names a column we know, or holds no digit at all (e.g. "DID,Region"):
  // a data row's number always has digits, however it is spaced.
  const names = first.cells.map(columnKey);
  const known = (n: string) => NUMBER_HEADERS.has(n) || COUNTRY_HEADERS.has(n) || STATE_HEADERS.has(n);
  const looksLikeHeader = names.some(known) || !first.cells.some((c) => /\d/.test(c));
  if (looksLikeHeader) {
    const find = (set: ReadonlySet<string>) => names.findIndex((n) => set.has(n));
    const number = find(NUMBER_HEADERS);
    if (number < 0) {
      throw new VnumError(ErrorCode.InvalidCsv, `line ${first.line}: header has no number column (one of: ${[...NUMBER_HEADERS].join(', ')})`);
    }
    columns = { number, country: find(COUNTRY_HEADERS), state: find(STATE_HEADERS) };
    rows.shift();
  }
  return rows.map(({ line, cells }) => {
    const number = cells[columns.number] ?? '';
    if (number === '') throw new VnumError(ErrorCode.InvalidCsv, `line ${line}: no number`);
    const country = columns.country >= 0 ? cells[columns.country] || undefined : undefined;
    const stateText = columns.state >= 0 ? (cells[columns.state] ?? '').toLowerCase() : '';
    if (stateText !== '' && !POOL_STATES.includes(stateText as PoolState)) {
      throw new VnumError(ErrorCode.InvalidCsv, `line ${line}: unknown state "${cells[columns.state]}" (use ${POOL_STATES.join(', ')})`);
    }
    return { line, number, country, state: stateText === '' ? undefined : (stateText as PoolState) };
  });
}
