import { isIPv6 } from 'node:net';
import pino, { type DestinationStream, type LogFn, type Logger } from 'pino';
import { ErrorCode, VnumError } from './errors.js';

/**
 * Logging: pino JSON on stderr. Real numbers never reach a log line in full,
 * and the identifiers an operator matches a line to a call by (session id,
 * Asterisk uniqueid, channel) reach it intact.
 *
 * Each line is parsed and walked before it is written:
 * - a field that carries a number (`caller`, `target`, `number`, ... at any
 *   depth, see NUMBER_FIELDS) keeps only its last 4 digits, whatever it
 *   holds: any separators, any script's digits (`٠٧٤٠٠٠٠٠٠٠١`), any length
 *   (clipped), bidi controls neutralised;
 * - identifier fields (`session`, `uniqueid`, `db`, ...) are left alone;
 * - every other string, the message and error text included, is scanned for
 *   numbers: a run of 7 or more digits (any script) that starts a word or a
 *   `+`, through any separators except letters and quotes, keeps its last 4
 *   digits; a quoted value (`invalid number "+44/7400/000001"`, how vnum
 *   echoes input) that is not an identifier keeps only its last 4 digits
 *   altogether. Digits that continue an identifier (`order-1234567`,
 *   `PJSIP/carrier-00000017`), ISO times, IP addresses and uniqueids
 *   (`1732526400.17`) are kept.
 * pid and hostname are left out. VNUM_LOG_REDACT=off writes lines untouched.
 *
 * Lines a peer or a caller can cause (refused connections, invalid calls)
 * must not flood the log under attack: see floodLimit below.
 */

/** Fields whose value is a phone number, compared in lower case. */
const NUMBER_FIELDS: ReadonlySet<string> = new Set([
  'caller',
  'callee',
  'called',
  'dialled',
  'dialed',
  'callerid',
  'calleridnum',
  'connectedlinenum',
  'destcalleridnum',
  'destconnectedlinenum',
  'exten',
  'extension',
  'dnid',
  'rdnis',
  'ani',
  'target',
  'cli',
  'did',
  'number',
  'numbers',
  'party',
  'parties',
  'maskedas',
  'from',
  'to',
  'phone',
  'msisdn',
]);

/** Identifiers and paths, compared in lower case: never altered. */
const IDENTIFIER_FIELDS: ReadonlySet<string> = new Set([
  'session',
  'sessionid',
  'uniqueid',
  'linkedid',
  'destuniqueid',
  'id',
  'callid',
  'actionid',
  'db',
  'path',
  'file',
  'address',
  'host',
  'router',
  'time',
  'level',
]);

const KEEP_DIGITS = 4;
const MAX_NUMBER_FIELD = 64;
/** Digits a run needs before it counts as a number. */
const MIN_DIGITS = 7;

const isDigit = (ch: string): boolean => (ch >= '0' && ch <= '9') || (ch > '\x7f' && /\p{N}/u.test(ch));
// Combining marks are not letters here: a mark on a digit must not end a number.
const isLetter = (ch: string): boolean => (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch > '\x7f' && /\p{L}/u.test(ch));
const isQuote = (ch: string): boolean => ch === '"' || ch === '\u201c' || ch === '\u201d' || ch === '\u00ab' || ch === '\u00bb';
/** Ends a run: letters, quotes, control characters (line breaks). */
const stopsRun = (ch: string): boolean => isLetter(ch) || isQuote(ch) || ch < ' ' || ch === '\x7f';
const JOINERS = new Set(['-', '_', '.']);
/** Bidi embeddings, overrides and isolates: they reorder what a terminal shows. */
const BIDI_CONTROLS = /[\u202a-\u202e\u2066-\u2069]/g;

/** Every digit (any script) but the last four becomes `*`; everything else stays. */
function maskDigits(chars: string[]): string {
  let keep = KEEP_DIGITS;
  for (let i = chars.length - 1; i >= 0; i--) {
    if (!isDigit(chars[i]!)) continue;
    if (keep > 0) keep--;
    else chars[i] = '*';
  }
  return chars.join('');
}

/**
 * A value known to be a number: `+447700900123` -> `+********0123`, in any
 * notation. Longer than 64 characters, its middle is cut.
 */
export function redactNumber(value: string): string {
  let masked = maskDigits([...value.replace(BIDI_CONTROLS, '\ufffd')]);
  if (masked.length > MAX_NUMBER_FIELD) masked = `${masked.slice(0, 24)}…[${masked.length} chars]…${masked.slice(-24)}`;
  return masked;
}

// What a run of digits may be without being a number: ISO times and dates, IPv4 (with a port),
// uniqueids, IPv6 (checked). A run is kept only when it lies inside one of these.
const KEPT_SPANS =
  /\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)?(?!\d)|(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\d.])|(?<![\d.])\d{10}\.\d{1,10}(?![\d.])|(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])/g;

function keptSpans(text: string): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  for (const m of text.matchAll(KEPT_SPANS)) {
    if (m[0].includes(':') && !m[0].includes('-') && !m[0].includes('.') && !isIPv6(m[0])) continue;
    spans.push([m.index, m.index + m[0].length]);
  }
  return spans;
}

const IDENTIFIER_SHAPE = /^[A-Za-z][A-Za-z0-9._:/-]*$/;

/** Numbers inside free text (messages, error text, other fields). Linear in the text's length. */
export function redactText(text: string): string {
  if (!/\p{N}/u.test(text)) return text;
  const source = text.replace(BIDI_CONTROLS, '\ufffd');
  const spans = keptSpans(source);
  let out = '';
  let i = 0;
  let span = 0;
  while (i < source.length) {
    const ch = String.fromCodePoint(source.codePointAt(i)!);
    // A quoted value: vnum quotes what it echoes. Not an identifier? Then all of it is a number.
    if (isQuote(ch)) {
      const close = source.slice(i + 1, i + 258).search(/["\u201c\u201d\u00ab\u00bb\n]/);
      if (close >= 0 && source[i + 1 + close] !== '\n') {
        const inner = source.slice(i + 1, i + 1 + close);
        const digits = [...inner].filter(isDigit).length;
        if (digits >= MIN_DIGITS && !IDENTIFIER_SHAPE.test(inner)) {
          out += ch + maskDigits([...inner]) + source[i + 1 + close];
          i += close + 2;
          continue;
        }
      }
      out += ch;
      i++;
      continue;
    }
    const startsNumber = ch === '+' || ch === '\uff0b' || (isDigit(ch) && !startsInsideWord(source, i));
    if (!startsNumber) {
      out += ch;
      i += ch.length;
      continue;
    }
    // The run: digits and separators, up to the last digit before a stop.
    let end = i;
    let digits = 0;
    let j = i + (isDigit(ch) ? 0 : ch.length);
    while (j < source.length) {
      const c = String.fromCodePoint(source.codePointAt(j)!);
      if (isDigit(c)) {
        digits++;
        end = j + c.length;
      } else if (stopsRun(c)) break;
      j += c.length;
    }
    if (digits >= MIN_DIGITS) {
      // Kept only when the whole run is one time, address or uniqueid: `1.2.3.4 5678` is a number.
      while (span < spans.length && spans[span]![1] <= i) span++;
      const kept = spans[span];
      const run = source.slice(i, end);
      out += kept !== undefined && kept[0] <= i && end <= kept[1] ? run : maskDigits([...run]);
      i = end;
    } else {
      out += ch;
      i += ch.length;
    }
  }
  return out;
}

/** Digits right after a letter or digit, or after `-` `_` `.` that follow one, continue a word: `order-1234567`. */
function startsInsideWord(text: string, i: number): boolean {
  const before = charBefore(text, i);
  if (before === undefined) return false;
  if (isLetter(before) || isDigit(before)) return true;
  const earlier = charBefore(text, i - before.length);
  return JOINERS.has(before) && earlier !== undefined && (isLetter(earlier) || isDigit(earlier));
}

/** The code point that ends just before index i. */
function charBefore(text: string, i: number): string | undefined {
  if (i <= 0) return undefined;
  const low = text.charCodeAt(i - 1);
  if (low >= 0xdc00 && low <= 0xdfff && i >= 2) return text.slice(i - 2, i);
  return text[i - 1];
}

function redactField(value: unknown): unknown {
  if (typeof value === 'string') return redactNumber(value);
  if (typeof value === 'number' || typeof value === 'bigint') return redactNumber(String(value));
  if (Array.isArray(value)) return value.map(redactField);
  if (value !== null && typeof value === 'object') return redactValue(value);
  return value;
}

function redactValue(value: unknown, key?: string): unknown {
  const name = key?.toLowerCase();
  if (name !== undefined && NUMBER_FIELDS.has(name)) return redactField(value);
  if (typeof value === 'string') return name !== undefined && IDENTIFIER_FIELDS.has(name) ? value : redactText(value);
  if (Array.isArray(value)) return value.map((item) => redactValue(item, key));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactValue(v, k);
    return out;
  }
  return value;
}

/** One serialised log line (pino JSON), redacted; text that is not JSON is scanned as text. */
export function redactLine(line: string): string {
  const body = line.endsWith('\n') ? line.slice(0, -1) : line;
  const ending = body.length === line.length ? '' : '\n';
  try {
    const parsed: unknown = JSON.parse(body);
    if (parsed !== null && typeof parsed === 'object') return JSON.stringify(redactValue(parsed)) + ending;
  } catch {
    // not JSON: fall through
  }
  return redactText(body) + ending;
}

export interface LogOptions {
  level?: string;
  /** false only when the operator asks for it (VNUM_LOG_REDACT=off). */
  redact?: boolean;
  destination?: DestinationStream;
  /** The clock the flood limit reads (tests). */
  now?: () => number;
}

export function redactingStream(target: DestinationStream): DestinationStream {
  return {
    write: (chunk: string) => {
      const lines = chunk.split(/(?<=\n)/);
      target.write(lines.length === 1 ? redactLine(chunk) : lines.map(redactLine).join(''));
    },
  };
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** VNUM_LOG_LEVEL: a pino level; unset or empty means info. */
export function logLevelSetting(text: string | undefined): string {
  if (text === undefined || text === '') return 'info';
  const level = text.toLowerCase();
  if (!(LEVELS as readonly string[]).includes(level)) {
    throw new VnumError(ErrorCode.Configuration, `invalid VNUM_LOG_LEVEL "${text}": one of ${LEVELS.join(', ')}`);
  }
  return level;
}

/** VNUM_LOG_REDACT: `off` shows numbers in full; `on`, unset or empty redacts. */
export function logRedactSetting(text: string | undefined): boolean {
  if (text === undefined || text === '' || text.toLowerCase() === 'on') return true;
  if (text.toLowerCase() === 'off') return false;
  throw new VnumError(
    ErrorCode.Configuration,
    `invalid VNUM_LOG_REDACT "${text}": "off" shows numbers in full in logs, "on" (the default) keeps their last 4 digits`,
  );
}

/** At info level and above, at most this many lines a second with the same message. */
export const LINES_PER_MESSAGE_PER_SECOND = 20;
const INFO = 30;
/** Distinct messages tracked at once; messages are the code's own, so this is never reached in practice. */
const MAX_TRACKED = 1_000;

type LogArgs = Parameters<LogFn>;

/**
 * A pino logMethod hook: per message, at most LINES_PER_MESSAGE_PER_SECOND
 * lines in each second at info level and above; the rest are dropped and
 * counted into the next line with that message, as `suppressed`. Debug lines
 * (one per call, on purpose) pass untouched.
 */
function floodLimit(now: () => number = Date.now): (this: Logger, args: LogArgs, method: LogFn, level: number) => void {
  const windows = new Map<string, { start: number; written: number; suppressed: number }>();
  return function (this: Logger, args, method, level) {
    if (level < INFO) return method.apply(this, args);
    const [first, second] = args as unknown[];
    const message = typeof first === 'string' ? first : typeof second === 'string' ? second : '';
    const at = now();
    let window = windows.get(message);
    if (window === undefined) {
      if (windows.size >= MAX_TRACKED) windows.clear();
      window = { start: at, written: 0, suppressed: 0 };
      windows.set(message, window);
    } else if (at - window.start >= 1000) {
      window.start = at;
      window.written = 0;
    }
    if (window.written >= LINES_PER_MESSAGE_PER_SECOND) {
      window.suppressed++;
      return;
    }
    window.written++;
    if (window.suppressed === 0) return method.apply(this, args);
    const suppressed = window.suppressed;
    window.suppressed = 0;
    const fields =
      first instanceof Error ? { err: first, suppressed } : typeof first === 'object' && first !== null ? { ...first, suppressed } : undefined;
    const withCount = (fields === undefined ? [{ suppressed }, ...args] : [fields, ...args.slice(1)]) as unknown as LogArgs;
    return method.apply(this, withCount);
  };
}

export function createLogger(options: LogOptions = {}): Logger {
  const level = logLevelSetting(options.level ?? process.env.VNUM_LOG_LEVEL);
  const redact = options.redact ?? logRedactSetting(process.env.VNUM_LOG_REDACT);
  const target = options.destination ?? pino.destination({ fd: 2, sync: true });
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      hooks: { logMethod: floodLimit(options.now) },
    },
    redact ? redactingStream(target) : target,
  );
}
