import { ErrorCode, VnumError } from '../errors.js';
import { refusedAddress, resolveAll } from '../webhooks/address.js';
import type { WebhookSettings } from '../webhooks/deliverer.js';
import { hostOf } from '../webhooks/post.js';
import { DEFAULT_RETRY, type RetryPolicy } from '../webhooks/retry.js';
import { readSecretFile } from './secret-file.js';
import { boundedDuration, boundedInteger, configurationError, formatMs } from './settings.js';

/**
 * Where and how the deliverer sends webhooks (README, "Webhooks",
 * "Configuration"): flags of `vnum webhooks deliver`, else the environment
 * (what `vnum api` reads when it hosts the deliverer). Judged before anything
 * is opened; every mistake is VNUM_CONFIGURATION naming the setting.
 *
 * One receiver URL: ordering per session is a property of one stream, and
 * an order system fans events out itself. One or two signing secrets (two
 * while rotating: every request is signed with each), from a file or
 * VNUM_WEBHOOK_SECRET, never a flag.
 */
export interface WebhookFlags {
  url?: string | undefined;
  secretFile?: string | undefined;
  timeout?: string | undefined;
  concurrency?: string | undefined;
  retryFor?: string | undefined;
  backoffMin?: string | undefined;
  backoffMax?: string | undefined;
  allowLocal?: boolean | undefined;
  realNumbers?: boolean | undefined;
}

export const WEBHOOK_LIMITS = Object.freeze({
  timeoutMs: Object.freeze({ min: 100, max: 60_000 }),
  concurrency: Object.freeze({ min: 1, max: 256 }),
  retryForMs: Object.freeze({ min: 1_000, max: 14 * 86_400_000 }),
  backoffMinMs: Object.freeze({ min: 10, max: 3_600_000 }),
  backoffMaxMs: Object.freeze({ min: 10, max: 86_400_000 }),
  secretLength: Object.freeze({ min: 32, max: 256 }),
});

export const WEBHOOK_DEFAULTS = Object.freeze({ timeoutMs: 10_000, concurrency: 8, ...DEFAULT_RETRY });

const MAX_URL_LENGTH = 2_000;
// Printable ASCII but blanks and commas (the separators between two secrets).
const SECRET = /^[\x21-\x2b\x2d-\x7e]+$/;

function configuration(message: string): VnumError {
  return new VnumError(ErrorCode.Configuration, message);
}

function given(value: string | undefined): value is string {
  return value !== undefined && value !== '';
}

/** A flag, else its environment variable: the value and the name to show. */
function pick(flag: string | undefined, flagName: string, env: string | undefined, envName: string): { value: string | undefined; name: string } {
  return given(flag) ? { value: flag, name: flagName } : { value: given(env) ? env : undefined, name: envName };
}

function onOff(name: string, value: string | undefined): boolean {
  if (value === undefined || value === '') return false;
  const text = value.trim().toLowerCase();
  if (['on', 'yes', 'true', '1'].includes(text)) return true;
  if (['off', 'no', 'false', '0'].includes(text)) return false;
  throw configurationError(name, value, 'on or off');
}

export function receiverUrl(name: string, text: string): URL {
  // The URL parser silently drops tabs and line breaks: refuse them instead.
  if (text.length > MAX_URL_LENGTH || /[\s\p{Cc}]/u.test(text)) {
    throw configurationError(name, text.slice(0, 100), `an http(s) URL of at most ${MAX_URL_LENGTH} characters, without blanks or control characters`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw configurationError(name, text, 'not a URL (https://orders.example.com/vnum-events)');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw configurationError(name, text, 'only http and https URLs');
  if (url.username !== '' || url.password !== '') {
    throw configurationError(name, url.origin, 'no credentials in the URL: it shows in logs and status; the signature authenticates vnum to the receiver');
  }
  if (url.hash !== '') throw configurationError(name, text, 'no #fragment: it is never sent');
  return url;
}

function secretsFrom(text: string, source: string): string[] {
  const secrets = text.split(/[\s,]+/).filter((s) => s !== '');
  const { min, max } = WEBHOOK_LIMITS.secretLength;
  if (secrets.length === 0) throw configuration(`${source} holds no secret`);
  if (secrets.length > 2) throw configuration(`${source} holds ${secrets.length} secrets: one, or two while rotating`);
  for (const [i, secret] of secrets.entries()) {
    if (secret.length < min || secret.length > max || !SECRET.test(secret)) {
      throw configuration(
        `${source}: secret ${i + 1} must be ${min} to ${max} printable ASCII characters without blanks or commas (e.g. "openssl rand -hex 32")`,
      );
    }
  }
  if (secrets.length === 2 && secrets[0] === secrets[1]) throw configuration(`${source} holds the same secret twice`);
  return secrets;
}

/** The deliverer's settings, or null when webhooks are not configured at all. */
export function webhookSettings(flags: WebhookFlags, env: NodeJS.ProcessEnv = process.env): WebhookSettings | null {
  const url = pick(flags.url, '--url', env.VNUM_WEBHOOK_URL, 'VNUM_WEBHOOK_URL');
  const secretFile = pick(flags.secretFile, '--secret-file', env.VNUM_WEBHOOK_SECRET_FILE, 'VNUM_WEBHOOK_SECRET_FILE');
  const timeout = pick(flags.timeout, '--timeout', env.VNUM_WEBHOOK_TIMEOUT, 'VNUM_WEBHOOK_TIMEOUT');
  const concurrency = pick(flags.concurrency, '--concurrency', env.VNUM_WEBHOOK_CONCURRENCY, 'VNUM_WEBHOOK_CONCURRENCY');
  const retryFor = pick(flags.retryFor, '--retry-for', env.VNUM_WEBHOOK_RETRY_FOR, 'VNUM_WEBHOOK_RETRY_FOR');
  const backoffMin = pick(flags.backoffMin, '--backoff-min', env.VNUM_WEBHOOK_BACKOFF_MIN, 'VNUM_WEBHOOK_BACKOFF_MIN');
  const backoffMax = pick(flags.backoffMax, '--backoff-max', env.VNUM_WEBHOOK_BACKOFF_MAX, 'VNUM_WEBHOOK_BACKOFF_MAX');
  const allowLocal = flags.allowLocal === true || onOff('VNUM_WEBHOOK_ALLOW_LOCAL', env.VNUM_WEBHOOK_ALLOW_LOCAL);
  const realNumbers = flags.realNumbers === true || onOff('VNUM_WEBHOOK_REAL_NUMBERS', env.VNUM_WEBHOOK_REAL_NUMBERS);
  const secretEnv = env.VNUM_WEBHOOK_SECRET;

  if (url.value === undefined) {
    const stray = [secretFile, timeout, concurrency, retryFor, backoffMin, backoffMax].filter((s) => s.value !== undefined).map((s) => s.name);
    if (given(secretEnv)) stray.push('VNUM_WEBHOOK_SECRET');
    if (stray.length > 0) throw configuration(`${stray.join(', ')} given without a receiver URL (VNUM_WEBHOOK_URL or --url): webhooks would stay off`);
    return null;
  }
  const receiver = receiverUrl(url.name, url.value);
  let secrets: string[];
  if (secretFile.value !== undefined) secrets = secretsFrom(readSecretFile(secretFile.value, 'webhook secret file', ErrorCode.Configuration), `the webhook secret file "${secretFile.value}"`);
  else if (given(secretEnv)) secrets = secretsFrom(secretEnv, 'VNUM_WEBHOOK_SECRET');
  else {
    throw configuration('webhooks need a signing secret: set VNUM_WEBHOOK_SECRET_FILE (or --secret-file) or VNUM_WEBHOOK_SECRET; receivers must be able to tell vnum\'s requests from anyone else\'s');
  }
  const L = WEBHOOK_LIMITS;
  const retry: RetryPolicy = {
    retryForMs: retryFor.value === undefined ? WEBHOOK_DEFAULTS.retryForMs : boundedDuration(L.retryForMs)(retryFor.name, retryFor.value),
    backoffMinMs: backoffMin.value === undefined ? WEBHOOK_DEFAULTS.backoffMinMs : boundedDuration(L.backoffMinMs)(backoffMin.name, backoffMin.value),
    backoffMaxMs: backoffMax.value === undefined ? WEBHOOK_DEFAULTS.backoffMaxMs : boundedDuration(L.backoffMaxMs)(backoffMax.name, backoffMax.value),
  };
  if (retry.backoffMaxMs < retry.backoffMinMs) {
    throw configurationError(backoffMax.name, formatMs(retry.backoffMaxMs), `shorter than ${backoffMin.name} (${formatMs(retry.backoffMinMs)})`);
  }
  return {
    url: receiver,
    secrets,
    timeoutMs: timeout.value === undefined ? WEBHOOK_DEFAULTS.timeoutMs : boundedDuration(L.timeoutMs)(timeout.name, timeout.value),
    concurrency: concurrency.value === undefined ? WEBHOOK_DEFAULTS.concurrency : boundedInteger(L.concurrency)(concurrency.name, concurrency.value),
    retry,
    allowLocal,
    realNumbers,
  };
}

/**
 * At start: the receiver's host resolves, and to nothing vnum refuses (its
 * own host, unless allowed). A name that does not exist is a configuration
 * error; a resolver that fails for now is not (the result: a warning, and
 * every connection is checked anyway).
 */
export async function checkReceiver(settings: WebhookSettings, name = 'VNUM_WEBHOOK_URL'): Promise<string | undefined> {
  const host = hostOf(settings.url);
  let addresses: string[];
  try {
    addresses = await resolveAll(host);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND') throw configurationError(name, settings.url.href, `${host} does not resolve`);
    return `cannot resolve ${host} now (${code ?? (e as Error).message}): trying anyway`;
  }
  for (const address of addresses) {
    const why = refusedAddress(address, settings.allowLocal);
    if (why) {
      throw configurationError(
        name,
        settings.url.href,
        `${host === address ? '' : `${host} resolves to `}${why}: vnum does not send webhooks to its own host unless VNUM_WEBHOOK_ALLOW_LOCAL=on`,
      );
    }
  }
  return undefined;
}
