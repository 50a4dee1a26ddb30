import { CsvError, parse } from 'csv-parse/sync';
import { ErrorCode, VnumError } from '../errors.js';
import type { PoolEntryInput, PoolState } from './pool.js';
import { POOL_STATES } from './pool.js';
import { columnKey, COUNTRY_NAMES as COUNTRY_HEADERS, NUMBER_NAMES as NUMBER_HEADERS, STATE_NAMES as STATE_HEADERS } from './columns.js';

export interface CsvRow {
  /** The line the row starts on. */
  line: number;
  cells: string[];
}

/** What csv-parse's strictness means for someone fixing a provider's export. */
const CSV_PROBLEMS: Record<string, string> = {
  CSV_QUOTE_NOT_CLOSED: 'unterminated quoted field',
  CSV_INVALID_CLOSING_QUOTE: 'text after a closing quote (a quoted field ends at its quote, then a comma or the line\'s end)',
  // (csv-parse 7 names this one without its CSV_ prefix)
  INVALID_OPENING_QUOTE: 'a quote inside a field that does not start with one (quote the whole field and double its quotes)',
};

/**
 * RFC 4180 records (csv-parse): quoted fields, doubled quotes, CRLF or LF, a
 * BOM. Blank lines and lines starting with `#` are skipped; cells are
 * trimmed. Anything malformed is refused with its line, never read as
 * something else (`"+4420"x` is not `+4420x`).
 */
export function parseCsvRows(text: string): CsvRow[] {
  /** The line each record ends on, as csv-parse counts them. */
  const ends: number[] = [];
  try {
    const records = parse(text, {
      bom: true,
      comment: '#',
      comment_no_infix: true,
      skip_empty_lines: true,
      trim: true,
      relax_column_count: true,
      on_record: (record, context) => (ends.push(context.lines), record),
    });
    // Quoted line breaks say how far back from its last line a record began.
    return records.map((cells, i) => ({ line: ends[i]! - cells.reduce((n, cell) => n + (cell.match(/\n/g)?.length ?? 0), 0), cells }));
  } catch (e) {
    if (!(e instanceof CsvError)) throw e;
    const after = ends.at(-1) ?? 0;
    const line = (e as CsvError & { lines?: number }).lines ?? after + 1;
    const where = e.code === 'CSV_QUOTE_NOT_CLOSED' && line > after + 1 ? `lines ${after + 1} to ${line}` : `line ${line}`;
    throw new VnumError(ErrorCode.InvalidCsv, `${where}: ${CSV_PROBLEMS[e.code] ?? e.message}`);
  }
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
