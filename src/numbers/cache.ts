import { normaliseNumber, type E164 } from './normalise.js';
import { numberType, type NumberType } from './type.js';

/**
 * A bounded segmented LRU (SLRU): new keys enter a probation segment; a key
 * seen again moves to a protected segment. Each segment is a Map in recency
 * order with a fixed capacity, so the whole never holds more than
 * `probation + protected` entries, whatever the input. A flood of keys seen
 * once (a hostile caller-ID generator) only churns probation: what is used
 * again and again (the pool's DIDs) stays protected.
 */
export class SegmentedLru<V> {
  private readonly probation = new Map<string, V>();
  private readonly protected = new Map<string, V>();

  constructor(
    readonly probationCapacity: number,
    readonly protectedCapacity: number,
  ) {
    if (!(probationCapacity >= 1 && protectedCapacity >= 1)) throw new RangeError('SegmentedLru: capacities must be at least 1');
  }

  get size(): number {
    return this.probation.size + this.protected.size;
  }

  get(key: string): V | undefined {
    let value = this.protected.get(key);
    if (value !== undefined) {
      this.protected.delete(key);
      this.protected.set(key, value);
      return value;
    }
    value = this.probation.get(key);
    if (value !== undefined) {
      this.probation.delete(key);
      this.protect(key, value);
    }
    return value;
  }

  /** Call only for a key `get` did not find. */
  set(key: string, value: V): void {
    this.admit(key, value);
  }

  clear(): void {
    this.probation.clear();
    this.protected.clear();
  }

  private protect(key: string, value: V): void {
    this.protected.set(key, value);
    if (this.protected.size > this.protectedCapacity) {
      // The least recently used protected key gets one more chance in probation.
      const [oldKey, oldValue] = this.protected.entries().next().value as [string, V];
      this.protected.delete(oldKey);
      this.admit(oldKey, oldValue);
    }
  }

  private admit(key: string, value: V): void {
    this.probation.set(key, value);
    if (this.probation.size > this.probationCapacity) this.probation.delete(this.probation.keys().next().value as string);
  }
}

const COUNTRY = /^[A-Z]{2}$/;
/** Longer input (padding around a number) is normalised uncached: keys stay small. */
const MAX_CACHED_INPUT = 32;

/**
 * Numbers as the router sees them, memoised: the same few thousand DIDs (the
 * pool, in the formats the carriers deliver) and callers who call again.
 * Normalising one costs 10-40 µs (libphonenumber with full metadata: a RegExp
 * per number type tried), a hit well under 1 µs. Only successes are kept, of
 * inputs up to 32 characters, so an entry is small and the whole cache stays
 * around 1 MB at most; invalid input is judged afresh each time, as before.
 */
export const ROUTING_NUMBER_CACHE = new SegmentedLru<E164>(2048, 4096);

/** normaliseNumber, through ROUTING_NUMBER_CACHE: same result, same errors. */
export function normaliseNumberCached(input: string, defaultCountry?: string): E164 {
  // The key must say which country a national number was read in. A country is
  // two capitals (anything else is normalised uncached), so a fixed-width
  // prefix keeps keys of different countries apart.
  if (input.length > MAX_CACHED_INPUT || (defaultCountry !== undefined && !COUNTRY.test(defaultCountry))) {
    return normaliseNumber(input, defaultCountry);
  }
  const key = (defaultCountry ?? '--') + input;
  const hit = ROUTING_NUMBER_CACHE.get(key);
  if (hit !== undefined) return hit;
  const e164 = normaliseNumber(input, defaultCountry);
  ROUTING_NUMBER_CACHE.set(key, e164);
  return e164;
}

const TYPE_CACHE = new SegmentedLru<NumberType>(1024, 2048);

/**
 * numberType through a bounded cache: for the router, classifying the
 * target of a bridge written before the store kept target types (a row from
 * an older vnum). Such rows end with their sessions; new ones carry the type.
 */
export function numberTypeCached(e164: string): NumberType {
  const hit = TYPE_CACHE.get(e164);
  if (hit !== undefined) return hit;
  const type = numberType(e164);
  TYPE_CACHE.set(e164, type);
  return type;
}
