import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The signature on every webhook, Stripe's scheme (README, "Verifying a
 * webhook"): header `Vnum-Signature: t=<unix seconds>,v1=<hex>`, where v1 is
 * HMAC-SHA256, keyed with the secret's UTF-8 bytes, over `<t>.<body>`. With
 * two active secrets (a rotation) the header carries one v1 per secret; a
 * receiver accepts the request when any v1 matches a secret it holds and t
 * is within its tolerance of its own clock.
 */
export const SIGNATURE_HEADER = 'Vnum-Signature';
export const EVENT_ID_HEADER = 'Vnum-Event-Id';
/** What receivers should allow between t and their clock (the README's snippets use it). */
export const DEFAULT_TOLERANCE_SECONDS = 300;

function hmac(secret: string, timestamp: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`, 'utf8').digest('hex');
}

/** The header value for `body` signed at `timestamp` (unix seconds) with every active secret. */
export function signatureHeader(body: string, secrets: readonly string[], timestamp: number): string {
  return [`t=${timestamp}`, ...secrets.map((secret) => `v1=${hmac(secret, timestamp, body)}`)].join(',');
}

export type Verdict = { ok: true; timestamp: number } | { ok: false; reason: string };

/**
 * What a receiver does (the README's snippets say the same in Node and
 * Python): the raw body as received, the secrets it accepts, its tolerance.
 */
export function verifySignature(
  header: string | undefined,
  body: string,
  secrets: readonly string[],
  nowSeconds: number,
  toleranceSeconds = DEFAULT_TOLERANCE_SECONDS,
): Verdict {
  if (!header) return { ok: false, reason: 'no signature header' };
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const at = part.indexOf('=');
    const key = part.slice(0, at).trim();
    const value = part.slice(at + 1).trim();
    if (key === 't' && /^\d{1,12}$/.test(value)) timestamp = Number(value);
    else if (key === 'v1' && /^[0-9a-f]{64}$/.test(value)) signatures.push(value);
  }
  if (timestamp === undefined) return { ok: false, reason: 'no timestamp' };
  if (signatures.length === 0) return { ok: false, reason: 'no v1 signature' };
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return { ok: false, reason: 'timestamp outside the tolerance' };
  for (const secret of secrets) {
    const expected = Buffer.from(hmac(secret, timestamp, body), 'hex');
    if (signatures.some((s) => timingSafeEqual(Buffer.from(s, 'hex'), expected))) return { ok: true, timestamp };
  }
  return { ok: false, reason: 'no signature matches' };
}
