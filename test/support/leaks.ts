import type { SipMessage } from './sip/messages.js';

/**
 * Where a real number shows. In a SIP message, a real number counts as
 * present when its last 9 digits appear in any header (or the start line, or
 * the body), whatever the formatting around them: +44 113 496 0123,
 * 01134960123, 441134960123 and tel:+44-113-496-0123 all contain 134960123.
 * In a log line, numberPattern() finds it.
 */

export interface Leak {
  message: string;
  where: string;
  number: string;
}

/** A From/To value without its tag and port, which the far side may drop. */
function withoutTag(value: string): string {
  return value
    .replace(/;\s*tag=[^;]*/i, '')
    .replace(/(@[^:>;]+):\d+/, '$1')
    .replace(/\s+/g, '');
}

function tail(number: string): string {
  return number.replace(/\D/g, '').slice(-9);
}

/**
 * `ownHeaders`: header values this side itself sent (its From, which SIP
 * echoes back in every response, and as To in requests towards it). What a
 * party sent about itself is not a leak to it.
 */
export function findLeaks(messages: SipMessage[], realNumbers: string[], ownHeaders: string[] = []): Leak[] {
  const leaks: Leak[] = [];
  const own = new Set(ownHeaders.map(withoutTag));
  for (const m of messages) {
    const places: [string, string][] = [
      ['start line', m.startLine],
      ...m.headers
        .filter((h) => !own.has(withoutTag(h.value)))
        .map((h): [string, string] => [h.name, h.value]),
      ['body', m.body],
    ];
    for (const number of realNumbers) {
      const digits = tail(number);
      for (const [where, text] of places) {
        if (text.includes(digits) || text.replace(/\D/g, '').includes(digits)) {
          leaks.push({ message: m.startLine, where, number });
        }
      }
    }
  }
  return leaks;
}

/**
 * Where a real number appears in text, in any formatting a log or message
 * could give it: its last 9 digits, with up to two separators between digits.
 */
export function numberPattern(e164: string): RegExp {
  const digits = e164.replace(/\D/g, '').slice(-9);
  return new RegExp(digits.split('').join('[\\s().+-]{0,2}'));
}
