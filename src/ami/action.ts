import { randomBytes } from 'node:crypto';
import { AmiHeaderError } from './errors.js';

/**
 * What goes on the AMI wire as one action, checked before asterisk-manager
 * writes it. The library joins `Name: value` lines with CRLF as given: a value
 * holding CR or LF would end the header early and start another (a second
 * `Action:` in the same message, or a new message after a blank line). So a
 * CR, LF or NUL anywhere in a name or a value refuses the whole action; it is
 * never cleaned, because a cleaned channel name is a different channel.
 */

export type AmiActionHeaders = Readonly<Record<string, string | number>>;

// AMI header names: a letter, then letters, digits and dashes (Asterisk's own
// are all of this form). The library lower-cases names and upper-cases the
// first letter; Asterisk reads names case-insensitively.
const HEADER_NAME = /^[A-Za-z][A-Za-z0-9-]{0,63}$/;
// Asterisk reads a message line into a 1025-byte buffer; longer lines are cut.
const MAX_VALUE = 1000;
const FORBIDDEN = /[\r\n\0]/;

/**
 * The headers of one action, checked, as the object asterisk-manager's
 * `action()` takes: `action` named first, `actionid` set by us. Throws
 * AmiHeaderError for anything that could change the message's framing.
 */
export function checkedAction(name: string, headers: AmiActionHeaders, actionId: string): Record<string, string> {
  const out: Record<string, string> = {};
  const seen = new Set<string>();
  const put = (key: string, value: unknown): void => {
    if (!HEADER_NAME.test(key)) throw new AmiHeaderError(`AMI header name ${JSON.stringify(key.slice(0, 70))} is not a header name`);
    const lower = key.toLowerCase();
    if (seen.has(lower)) throw new AmiHeaderError(`AMI header ${key} given twice`);
    seen.add(lower);
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw new AmiHeaderError(`AMI header ${key}: not a finite number`);
      value = String(value);
    }
    if (typeof value !== 'string') throw new AmiHeaderError(`AMI header ${key}: only strings and numbers are sent`);
    if (FORBIDDEN.test(value)) throw new AmiHeaderError(`AMI header ${key}: CR, LF or NUL in the value`);
    if (value.length > MAX_VALUE) throw new AmiHeaderError(`AMI header ${key}: value over ${MAX_VALUE} characters`);
    out[lower] = value;
  };
  put('Action', name);
  for (const [key, value] of Object.entries(headers)) {
    const lower = key.toLowerCase();
    if (lower === 'action' || lower === 'actionid') throw new AmiHeaderError(`AMI header ${key} is set by the client`);
    put(key, value);
  }
  put('ActionID', actionId);
  return out;
}

/**
 * ActionIDs unique for the life of the process and across processes: a random
 * prefix per client, then a counter. asterisk-manager's own is Date.now(),
 * the same for two actions in one millisecond and for two clients.
 */
export function actionIdSource(prefix = 'vnum'): () => string {
  const instance = randomBytes(4).toString('hex');
  let next = 0;
  return () => `${prefix}-${instance}-${(next++).toString(36)}`;
}
