/**
 * A provider's export, from the bytes a file or a server gave: which format
 * it is (CSV or JSON), decoded, read into pool entries. The export is
 * attacker-controlled input: anything that is not plainly a list of numbers
 * is refused with the place named (a CSV line, a JSON item, a line and
 * column), before anything is written.
 *
 * The JSON shape (README, "Syncing with the provider"): an array whose items
 * are numbers as strings or objects with a number field (`number`,
 * `phone_number`, `msisdn`, … as CSV headers name it) and optionally a
 * country and a state; or an object holding that array under `numbers` or
 * as its only array (`{"data": [...]}`, as providers' list APIs wrap theirs).
 * An object that says there is a next page is refused: a sync needs the
 * whole list.
 */
import { ErrorCode, VnumError } from '../errors.js';
import { COUNTRY_NAMES, NUMBER_NAMES, STATE_NAMES, columnKey } from './columns.js';
import { parsePoolCsv } from './csv.js';
import { POOL_STATES, type PoolEntryInput, type PoolState } from './pool.js';

export const EXPORT_FORMATS = ['csv', 'json'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportHints {
  /** The format the operator names (`--format`): it wins over what a server declares or the bytes look like. */
  format?: ExportFormat | undefined;
  /** The Content-Type a server declared (undefined: none, or not from a server). */
  contentType?: string | undefined;
  /** A file's name: its extension names the format. */
  fileName?: string | undefined;
}

export interface ProviderExport {
  format: ExportFormat;
  entries: PoolEntryInput[];
}

function invalid(message: string): VnumError {
  return new VnumError(ErrorCode.InvalidExport, message);
}

const JSON_TYPES = /^(application\/json|text\/json|application\/[a-z0-9.+-]+\+json)$/;
const CSV_TYPES = new Set(['text/csv', 'application/csv', 'text/comma-separated-values', 'text/x-csv', 'application/vnd.ms-excel']);
/** Types that say nothing of the format: the bytes decide (S3 and plain web servers send these for any file). */
const GENERIC_TYPES = new Set(['text/plain', 'application/octet-stream', 'binary/octet-stream']);

/** What a Content-Type says: a format, nothing (generic), or a refusal. */
function formatOfContentType(contentType: string): ExportFormat | undefined {
  const [type = '', ...parameters] = contentType.split(';').map((p) => p.trim());
  const mediaType = type.toLowerCase();
  const charset = parameters.map((p) => /^charset\s*=\s*"?([^";]*)"?$/i.exec(p)?.[1]).find((c) => c !== undefined);
  if (charset !== undefined && !/^(utf-?8|us-ascii)$/i.test(charset)) {
    throw invalid(`the server sent the export as ${charset.slice(0, 40)}: vnum reads UTF-8 exports`);
  }
  if (JSON_TYPES.test(mediaType)) return 'json';
  if (CSV_TYPES.has(mediaType)) return 'csv';
  if (GENERIC_TYPES.has(mediaType) || mediaType === '') return undefined;
  const page = mediaType === 'text/html' || mediaType === 'application/xhtml+xml' ? ' (a web page: an error or login page?)' : '';
  throw invalid(`the server sent ${mediaType.slice(0, 80)}, not CSV or JSON${page}`);
}

/** Bytes that are not text at all, named by their signature: a clearer refusal than a parse error. */
function binaryKind(bytes: Uint8Array): string | undefined {
  const starts = (...signature: number[]) => signature.every((b, i) => bytes[i] === b);
  if (starts(0x1f, 0x8b)) return 'a gzip file: decompress it first';
  if (starts(0x50, 0x4b, 0x03, 0x04)) return 'a ZIP file (an .xlsx spreadsheet?): export it as CSV';
  if (starts(0xff, 0xfe) || starts(0xfe, 0xff)) return 'UTF-16 text: save it as UTF-8';
  return undefined;
}

/** UTF-8, without a byte-order mark; anything else is refused naming the line of the first bad byte. */
export function decodeExport(bytes: Uint8Array): string {
  const kind = binaryKind(bytes);
  if (kind !== undefined) throw invalid(`the export is ${kind}`);
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    const lossy = new TextDecoder('utf-8').decode(bytes);
    const line = lossy.slice(0, Math.max(0, lossy.indexOf('\ufffd'))).split('\n').length;
    throw invalid(`line ${line}: the export is not UTF-8 text (a Latin-1 or Windows file? save it as UTF-8)`);
  }
}

function sniff(text: string): ExportFormat {
  return /^\s*[[{]/.test(text) ? 'json' : 'csv';
}

/** Read an export's bytes into entries, in the format the hints and the bytes say. */
export function readExport(bytes: Uint8Array, hints: ExportHints = {}): ProviderExport {
  const declared = hints.contentType !== undefined ? formatOfContentType(hints.contentType) : undefined;
  const text = decodeExport(bytes);
  if (text.trim() === '') throw invalid('the export is empty');
  const byName = hints.fileName !== undefined ? /\.(csv|json)$/i.exec(hints.fileName)?.[1]?.toLowerCase() : undefined;
  const format = hints.format ?? declared ?? (byName as ExportFormat | undefined) ?? sniff(text);
  return { format, entries: format === 'json' ? readJsonExport(text) : parsePoolCsv(text) };
}

// --- JSON ------------------------------------------------------------------

/** A member that, set, says the list continues on another page. Compared as columnKey. */
const NEXT_PAGE = new Set(['next', 'next_page', 'next_page_uri', 'next_page_url', 'next_url', 'next_link', 'next_cursor', 'next_page_token', 'next_token']);
/** Where list APIs keep their paging members, besides the top level. */
const PAGING_HOLDERS = new Set(['meta', 'links', 'pagination', 'paging', 'page_info']);

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function jsonKind(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : isObject(value) ? 'an object' : `a JSON ${typeof value}`;
}

function quoted(name: string): string {
  return JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
}

export function readJsonExport(text: string): PoolEntryInput[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalid(jsonSyntaxError(text));
  }
  const { list, path } = numberList(value);
  return list.map((item, index) => jsonEntry(item, path === '' ? `item ${index}` : `item ${path}[${index}]`));
}

function numberList(value: unknown): { list: unknown[]; path: string } {
  if (Array.isArray(value)) return { list: value, path: '' };
  if (!isObject(value)) throw invalid(`the export is ${jsonKind(value)}, not a list of numbers: give an array, or an object with one ({"numbers": [...]})`);
  refuseNextPage(value, '');
  if (Array.isArray(value.numbers) && Object.hasOwn(value, 'numbers')) return { list: value.numbers, path: 'numbers' };
  const lists = Object.keys(value).filter((key) => Array.isArray(value[key]));
  if (lists.length === 1) return { list: value[lists[0]!] as unknown[], path: lists[0]! };
  if (lists.length === 0) throw invalid('the export is an object without a list: give an array, or an object with one ({"numbers": [...]})');
  throw invalid(`the export holds ${lists.length} lists (${lists.slice(0, 5).map(quoted).join(', ')}): name the one of numbers "numbers"`);
}

function refuseNextPage(object: JsonObject, path: string): void {
  for (const [key, member] of Object.entries(object)) {
    const name = columnKey(key);
    const at = path === '' ? key : `${path}.${key}`;
    if (NEXT_PAGE.has(name) && member !== null && member !== false && member !== '') {
      throw invalid(`the export is one page of several (${quoted(at)} is set): a sync needs the whole list in one export`);
    }
    if (path === '' && PAGING_HOLDERS.has(name) && isObject(member)) refuseNextPage(member, at);
  }
}

/** The one field of an item that `names` covers (a number under two names must agree). */
function field(item: JsonObject, names: ReadonlySet<string>, at: string): { key: string; value: unknown } | undefined {
  const found = Object.keys(item).filter((key) => names.has(columnKey(key)));
  if (found.length === 0) return undefined;
  const first = found[0]!;
  for (const other of found.slice(1)) {
    if (item[other] !== item[first]) throw invalid(`${at}: ${quoted(first)} and ${quoted(other)} disagree`);
  }
  return { key: first, value: item[first] };
}

function text(found: { key: string; value: unknown } | undefined, at: string): string | undefined {
  if (found === undefined || found.value === null) return undefined;
  if (typeof found.value === 'string') return found.value.trim() === '' ? undefined : found.value;
  const why = typeof found.value === 'number' ? ' (a JSON number loses a leading + or 0: write the number as a string)' : '';
  throw invalid(`${at}: ${quoted(found.key)} is ${jsonKind(found.value)}, not a string${why}`);
}

function jsonEntry(item: unknown, at: string): PoolEntryInput {
  if (typeof item === 'string') {
    if (item.trim() === '') throw invalid(`${at}: no number`);
    return { number: item, at };
  }
  if (!isObject(item)) {
    throw invalid(`${at} is ${jsonKind(item)}: each item is a number as a string, or an object with a "number" field`);
  }
  const number = text(field(item, NUMBER_NAMES, at), at);
  if (number === undefined) throw invalid(`${at}: no number (a field named one of: ${[...NUMBER_NAMES].join(', ')})`);
  const country = text(field(item, COUNTRY_NAMES, at), at);
  const stateField = field(item, STATE_NAMES, at);
  const stateText = text(stateField, at)?.toLowerCase();
  if (stateText !== undefined && !POOL_STATES.includes(stateText as PoolState)) {
    throw invalid(`${at}: unknown state ${quoted(String(stateField!.value))} (use ${POOL_STATES.join(', ')})`);
  }
  return { number, country, state: stateText as PoolState | undefined, at };
}

/**
 * Where JSON.parse gave up, as a line and column, found by a small scan of
 * the grammar (Node 20's messages quote the input instead of placing it).
 * An end reached too early is said so: a download cut short.
 */
export function jsonSyntaxError(text: string): string {
  const offset = jsonErrorOffset(text);
  if (offset < 0) return 'not valid JSON';
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  if (offset >= text.length) return `not valid JSON: it ends early at line ${line}, column ${column} (a download cut short?)`;
  const ch = text.codePointAt(offset)!;
  const shown = ch < 0x20 || ch === 0x7f ? `\\x${ch.toString(16).padStart(2, '0')}` : String.fromCodePoint(ch);
  return `not valid JSON at line ${line}, column ${column}: unexpected ${JSON.stringify(shown)}`;
}

const JSON_NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** The offset of the first character that breaks the JSON grammar (text.length: it ended early), or -1. */
function jsonErrorOffset(text: string): number {
  const n = text.length;
  const stack: string[] = [];
  type Expect = 'value' | 'value-or-close' | 'key' | 'key-or-close' | 'colon' | 'comma-or-close' | 'end';
  let expect: Expect = 'value';
  let i = 0;
  const afterValue = (): Expect => (stack.length > 0 ? 'comma-or-close' : 'end');
  /** Past the string starting at i, or the offset of what breaks it, negated minus one. */
  const string = (start: number): number => {
    for (let j = start + 1; j < n; j++) {
      const c = text.charCodeAt(j);
      if (c === 0x22) return j + 1;
      if (c < 0x20) return -j - 1;
      if (c === 0x5c) {
        const e = text[j + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(j + 2, j + 6))) return -Math.min(j + 2, n) - 1;
          j += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) j++;
        else return -Math.min(j + 1, n) - 1;
      }
    }
    return -n - 1;
  };
  for (;;) {
    while (i < n && ' \t\n\r'.includes(text[i]!)) i++;
    if (i >= n) return expect === 'end' ? -1 : n;
    const ch = text[i]!;
    if (expect === 'value' || expect === 'value-or-close') {
      if (expect === 'value-or-close' && ch === ']') {
        stack.pop();
        i++;
        expect = afterValue();
      } else if (ch === '{' || ch === '[') {
        stack.push(ch);
        i++;
        expect = ch === '{' ? 'key-or-close' : 'value-or-close';
      } else if (ch === '"') {
        const end = string(i);
        if (end < 0) return -end - 1;
        i = end;
        expect = afterValue();
      } else {
        JSON_NUMBER.lastIndex = i;
        const literal = ['true', 'false', 'null'].find((word) => text.startsWith(word, i));
        const number = JSON_NUMBER.exec(text);
        if (literal === undefined && number === null) return i;
        i += literal?.length ?? number![0].length;
        expect = afterValue();
      }
    } else if (expect === 'key' || expect === 'key-or-close') {
      if (expect === 'key-or-close' && ch === '}') {
        stack.pop();
        i++;
        expect = afterValue();
      } else if (ch === '"') {
        const end = string(i);
        if (end < 0) return -end - 1;
        i = end;
        expect = 'colon';
      } else return i;
    } else if (expect === 'colon') {
      if (ch !== ':') return i;
      i++;
      expect = 'value';
    } else if (expect === 'comma-or-close') {
      const top = stack.at(-1);
      if (ch === ',') {
        i++;
        expect = top === '{' ? 'key' : 'value';
      } else if ((ch === '}' && top === '{') || (ch === ']' && top === '[')) {
        stack.pop();
        i++;
        expect = afterValue();
      } else return i;
    } else return i;
  }
}
