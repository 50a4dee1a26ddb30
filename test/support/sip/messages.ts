/**
 * Parses sipp's -trace_msg message file into SIP messages, so tests assert on
 * the headers each side actually received.
 *
 * The file is a sequence of blocks:
 *   ----------------------------------------------- 2026-11-25\t09:30:01.123456
 *   UDP message received [512] bytes :
 *   <blank>
 *   SIP/2.0 180 Ringing
 *   ...
 */

export interface SipMessage {
  direction: 'sent' | 'received';
  /** Epoch ms from sipp's block header, when it could be read. */
  at: number | null;
  kind: 'request' | 'response';
  /** Request method, or '' for a response. */
  method: string;
  /** Response status, or 0 for a request. */
  status: number;
  /** The Request-URI of a request, '' for a response. */
  requestUri: string;
  /** The method named in CSeq (which request a response answers). */
  cseqMethod: string;
  startLine: string;
  headers: { name: string; value: string }[];
  body: string;
  /** The whole message text as sent on the wire. */
  raw: string;
  /** First value of a header (case-insensitive; compact forms mapped). */
  header(name: string): string | undefined;
  /** Every value of a header. */
  headerAll(name: string): string[];
}

const COMPACT: Record<string, string> = {
  f: 'from',
  t: 'to',
  i: 'call-id',
  m: 'contact',
  v: 'via',
  l: 'content-length',
  c: 'content-type',
  k: 'supported',
};

function canonical(name: string): string {
  const lower = name.trim().toLowerCase();
  return COMPACT[lower] ?? lower;
}

function parseTimestamp(line: string): number | null {
  const m = /(\d{4}-\d{2}-\d{2})\s+(\d{2}:\d{2}:\d{2})(\.\d+)?/.exec(line);
  if (m) {
    const ms = m[3] ? Number(m[3].slice(0, 4)) * 1000 : 0;
    const t = new Date(`${m[1]}T${m[2]}`).getTime();
    return Number.isNaN(t) ? null : t + Math.round(ms);
  }
  const epoch = /(\d{9,})\.(\d+)/.exec(line);
  if (epoch) return Number(epoch[1]) * 1000 + Number(epoch[2]!.padEnd(3, '0').slice(0, 3));
  return null;
}

export function parseSipMessage(text: string, direction: 'sent' | 'received', at: number | null): SipMessage | null {
  const normalised = text.replace(/\r\n/g, '\n').replace(/^\n+/, '');
  const split = normalised.indexOf('\n\n');
  const head = split >= 0 ? normalised.slice(0, split) : normalised;
  const body = split >= 0 ? normalised.slice(split + 2).replace(/\n+$/, '') : '';
  const lines = head.split('\n');
  const startLine = lines[0]?.trim() ?? '';
  if (!startLine) return null;
  const headers: { name: string; value: string }[] = [];
  for (const line of lines.slice(1)) {
    if (/^[ \t]/.test(line) && headers.length > 0) {
      headers[headers.length - 1]!.value += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    headers.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() });
  }
  const response = /^SIP\/2\.0\s+(\d{3})/.exec(startLine);
  const request = /^([A-Z]+)\s+(\S+)\s+SIP\/2\.0/.exec(startLine);
  if (!response && !request) return null;
  const headerAll = (name: string): string[] =>
    headers.filter((h) => canonical(h.name) === canonical(name)).map((h) => h.value);
  const cseq = headerAll('CSeq')[0] ?? '';
  return {
    direction,
    at,
    kind: response ? 'response' : 'request',
    method: request ? request[1]! : '',
    status: response ? Number(response[1]) : 0,
    requestUri: request ? request[2]! : '',
    cseqMethod: cseq.split(/\s+/)[1] ?? '',
    startLine,
    headers,
    body,
    raw: normalised,
    header: (name) => headerAll(name)[0],
    headerAll,
  };
}

export function parseMessageFile(text: string): SipMessage[] {
  const messages: SipMessage[] = [];
  const blocks = text.split(/^-{20,}[^\n]*$/m);
  const stamps = [...text.matchAll(/^-{20,}([^\n]*)$/gm)].map((m) => m[1] ?? '');
  blocks.slice(1).forEach((block, i) => {
    const lines = block.replace(/^\n/, '').split('\n');
    const info = lines[0] ?? '';
    const direction = /received/i.test(info) ? 'received' : /sent/i.test(info) ? 'sent' : null;
    if (!direction) return;
    const message = parseSipMessage(lines.slice(1).join('\n'), direction, parseTimestamp(stamps[i] ?? ''));
    if (message) messages.push(message);
  });
  return messages;
}

/** The user part of the first SIP/TEL URI in a header value (From, PAI, ...). */
export function uriUser(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const m = /(?:sips?|tel):([^@;>]+)/i.exec(value);
  return m ? decodeURIComponent(m[1]!) : undefined;
}

/** Every header line and the start line of a message, for "no header contains X". */
export function identityText(message: SipMessage): string {
  return [message.startLine, ...message.headers.map((h) => `${h.name}: ${h.value}`)].join('\n');
}

/** Start lines and headers of each message, for an assertion's failure text. */
export function describeMessages(messages: SipMessage[]): string {
  return messages.map((m) => m.raw.split('\n\n')[0]).join('\n---\n');
}
