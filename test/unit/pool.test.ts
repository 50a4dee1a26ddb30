import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addToPool, listPool, poolRevision, retireNumber } from '../../src/pool/pool.js';
import { parseCsvRows, parsePoolCsv } from '../../src/pool/csv.js';
import { createSession } from '../../src/session/sessions.js';
import { ErrorCode, VnumError } from '../../src/errors.js';
import type { E164 } from '../../src/numbers/normalise.js';
import { party, tempDb } from '../support/store.js';

let store: ReturnType<typeof tempDb>;
beforeEach(() => {
  store = tempDb();
});
afterEach(() => store.cleanup());

function errorOf(fn: () => unknown): VnumError {
  try {
    fn();
  } catch (e) {
    if (e instanceof VnumError) return e;
    throw e;
  }
  throw new Error('expected a VnumError');
}

describe('pool', () => {
  it('adds numbers with their country, normalised to E.164', () => {
    const change = addToPool(store.db, [{ number: '020 7946 0001', country: 'GB' }, { number: '+14155550199' }], { now: 5 });
    expect(change).toEqual({ added: 2, updated: 0, unchanged: 0 });
    expect(listPool(store.db)).toEqual([
      { number: '+14155550199', country: 'US', state: 'available', addedAt: 5 },
      { number: '+442079460001', country: 'GB', state: 'available', addedAt: 5 },
    ]);
  });

  it('adding the same numbers again changes nothing', () => {
    addToPool(store.db, [{ number: '+442079460001' }], { now: 1 });
    const revision = poolRevision(store.db);
    expect(addToPool(store.db, [{ number: '+442079460001' }], { now: 2 })).toEqual({ added: 0, updated: 0, unchanged: 1 });
    expect(poolRevision(store.db)).toBe(revision);
    expect(listPool(store.db)[0]!.addedAt).toBe(1);
  });

  it('changes the state of a number added again with another state', () => {
    addToPool(store.db, [{ number: '+442079460001' }], { now: 1 });
    expect(addToPool(store.db, [{ number: '+442079460001', state: 'reserved' }], { now: 2 })).toEqual({ added: 0, updated: 1, unchanged: 0 });
    expect(listPool(store.db)[0]!.state).toBe('reserved');
  });

  it('writes nothing when any entry is bad, and names the line', () => {
    const error = errorOf(() =>
      addToPool(store.db, [{ number: '+442079460001', line: 2 }, { number: 'nope', line: 3 }], { now: 1 }),
    );
    expect(error.code).toBe(ErrorCode.InvalidNumber);
    expect(error.message).toMatch(/^line 3: invalid number "nope"/);
    expect(listPool(store.db)).toEqual([]);
  });

  it('refuses a country that contradicts the number', () => {
    const error = errorOf(() => addToPool(store.db, [{ number: '+442079460001', country: 'FR' }], { now: 1 }));
    expect(error.message).toMatch(/belongs to GB, not FR/);
  });

  it('refuses a number that is a party in a session', () => {
    addToPool(store.db, [{ number: '+442079460001' }], { now: 1 });
    createSession(store.db, { id: 'o1', first: party('+447911000001'), second: party('+447911000002'), now: 1 });
    expect(errorOf(() => addToPool(store.db, [{ number: '+447911000001' }], { now: 2 })).code).toBe(ErrorCode.PoolConflict);
  });

  it('retires a number; retiring again is a no-op; unknown numbers are an error', () => {
    addToPool(store.db, [{ number: '+442079460001' }], { now: 1 });
    expect(retireNumber(store.db, '+442079460001' as E164)).toEqual({ changed: true });
    expect(retireNumber(store.db, '+442079460001' as E164)).toEqual({ changed: false });
    expect(listPool(store.db)[0]!.state).toBe('retired');
    expect(errorOf(() => retireNumber(store.db, '+442079460009' as E164)).code).toBe(ErrorCode.NotInPool);
  });
});

describe('pool CSV', () => {
  it('reads a bare three-column export', () => {
    expect(parsePoolCsv('+442079460001,GB,available\n02079460002,GB,reserved\n+442079460003\n')).toEqual([
      { line: 1, number: '+442079460001', country: 'GB', state: 'available' },
      { line: 2, number: '02079460002', country: 'GB', state: 'reserved' },
      { line: 3, number: '+442079460003', country: undefined, state: undefined },
    ]);
  });

  it('reads a header in any column order, quotes, CRLF, BOM, blank and comment lines', () => {
    const csv = '\ufeffStatus,Country,"Phone Number"\r\n# exported 2026-11-01\r\n\r\nRETIRED,GB,"+44 20 7946 0001"\r\n,gb,"+442079460002"\r\n';
    expect(parsePoolCsv(csv)).toEqual([
      { line: 4, number: '+44 20 7946 0001', country: 'GB', state: 'retired' },
      { line: 5, number: '+442079460002', country: 'gb', state: undefined },
    ]);
  });

  it('names the line of a bad state or a missing number', () => {
    expect(() => parsePoolCsv('number,state\n+442079460001,sold\n')).toThrow('line 2: unknown state "sold"');
    expect(() => parsePoolCsv('number,state\n,available\n')).toThrow('line 2: no number');
    expect(() => parsePoolCsv('did_only_header_without_number_column,x\n1,2')).toThrow(/header has no number column/);
  });

  it('refuses an unterminated quote', () => {
    expect(() => parseCsvRows('"+442079460001,GB\n')).toThrow('line 1: unterminated quoted field');
  });

  it('keeps doubled quotes and commas inside quotes', () => {
    expect(parseCsvRows('"a ""b"", c",d')).toEqual([{ line: 1, cells: ['a "b", c', 'd'] }]);
  });
});
