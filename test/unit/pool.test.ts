import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addToPool, listPool, poolRevision, retireNumber, type PoolEntryInput } from '../../src/pool/pool.js';
import { importedState } from '../../src/pool/plan.js';
import { parseCsvRows, parsePoolCsv } from '../../src/pool/csv.js';
import { createSession } from '../../src/session/sessions.js';
import { ErrorCode } from '../../src/errors.js';
import type { E164 } from '../../src/numbers/normalise.js';
import { party, tempDb } from '../support/store.js';
import { errorOf } from '../support/errors.js';
import { numberPattern } from '../support/leaks.js';

let store: ReturnType<typeof tempDb>;
beforeEach(() => {
  store = tempDb();
});
afterEach(() => store.cleanup());

describe('pool', () => {
  it('adds numbers with their country, normalised to E.164', () => {
    const change = addToPool(store.db, [{ number: '020 7946 0001', country: 'GB' }, { number: '+14155550199' }], { now: 5 });
    expect(change).toEqual({ added: 2, updated: 0, unchanged: 0, kept: [] });
    expect(listPool(store.db)).toEqual([
      // A new number handles callers without a bridge as vnum serve's defaults say (null each).
      { number: '+14155550199', country: 'US', state: 'available', addedAt: 5, handling: { pin: null, outOfSession: null, fallback: null } },
      { number: '+442079460001', country: 'GB', state: 'available', addedAt: 5, handling: { pin: null, outOfSession: null, fallback: null } },
    ]);
  });

  it('adding the same numbers again changes nothing', () => {
    addToPool(store.db, [{ number: '+442079460001' }], { now: 1 });
    const revision = poolRevision(store.db);
    expect(addToPool(store.db, [{ number: '+442079460001' }], { now: 2 })).toEqual({ added: 0, updated: 0, unchanged: 1, kept: [] });
    expect(poolRevision(store.db)).toBe(revision);
    expect(listPool(store.db)[0]!.addedAt).toBe(1);
  });

  it('changes the state of a number added again with another state', () => {
    addToPool(store.db, [{ number: '+442079460001' }], { now: 1 });
    expect(addToPool(store.db, [{ number: '+442079460001', state: 'reserved' }], { now: 2 })).toEqual({ added: 0, updated: 1, unchanged: 0, kept: [] });
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
    expect(error.message).toMatch(/\+44 numbering plan \(GB\), not FR's \(\+33\)/);
    expect(errorOf(() => addToPool(store.db, [{ number: '+14165550123', country: 'GB' }], { now: 1 })).code).toBe(ErrorCode.InvalidArgument);
    expect(listPool(store.db)).toEqual([]);
  });

  it('accepts a country that shares the number\'s calling code, and keeps the country given', () => {
    // libphonenumber: +447911123456 is Guernsey's, +447797123456 Jersey's, +14165550123 Canada's.
    addToPool(store.db, [{ number: '+447911123456', country: 'GB' }, { number: '+447797123456', country: 'gb' }, { number: '+14165550123', country: 'US' }], { now: 1 });
    // Without a country, the region libphonenumber names.
    addToPool(store.db, [{ number: '+447911123457' }], { now: 1 });
    expect(listPool(store.db).map((n) => [n.number, n.country])).toEqual([
      ['+14165550123', 'US'],
      ['+447797123456', 'GB'],
      ['+447911123456', 'GB'],
      ['+447911123457', 'GG'],
    ]);
  });

  it('refuses a country that is no country, as a country error (not an invalid number)', () => {
    for (const country of ['XX', 'ZZ', 'UK', 'G1']) {
      const error = errorOf(() => addToPool(store.db, [{ number: '02079460001', country }], { now: 1 }));
      expect(error.code).toBe(ErrorCode.InvalidCountry);
      expect(error.message).toContain(`unknown country "${country}"`);
    }
  });

  it('refuses a number that is a party in a session, naming it by its last 4 digits only (the refusal tells whoever offered it that it is a party)', () => {
    addToPool(store.db, [{ number: '+442079460001' }], { now: 1 });
    createSession(store.db, { id: 'o1', first: party('+447911000001'), second: party('+447911000002'), now: 1 });
    const given = errorOf(() => addToPool(store.db, [{ number: '+442079460009' }, { number: '+447911000001' }], { now: 2 }));
    expect(given.code).toBe(ErrorCode.PoolConflict);
    expect(given.message).toBe("+********0001 is a party's real number in a session; it cannot be a virtual number");
    const national = errorOf(() => addToPool(store.db, [{ number: '07911 000001', line: 4 }], { defaultCountry: 'GB', now: 2 }));
    expect(national.message).toBe("line 4: +********0001 is a party's real number in a session; it cannot be a virtual number");
    for (const error of [given, national]) expect(error.message).not.toMatch(numberPattern('+447911000001'));
    expect(listPool(store.db).map((n) => n.number)).toEqual(['+442079460001']);
  });

  it('retires a number; retiring again is a no-op; unknown numbers are an error', () => {
    addToPool(store.db, [{ number: '+442079460001' }], { now: 1 });
    expect(retireNumber(store.db, '+442079460001' as E164)).toEqual({ changed: true, tookOverFromSync: false });
    expect(retireNumber(store.db, '+442079460001' as E164)).toEqual({ changed: false, tookOverFromSync: false });
    expect(listPool(store.db)[0]!.state).toBe('retired');
    expect(errorOf(() => retireNumber(store.db, '+442079460009' as E164)).code).toBe(ErrorCode.NotInPool);
  });
});

describe('re-importing never undoes the operator', () => {
  const imported = (entries: PoolEntryInput[], now = 9) => addToPool(store.db, entries, { now, writer: 'import' });
  const states = () => Object.fromEntries(listPool(store.db).map((n) => [n.number, n.state]));

  it('a row that names no state keeps a retired or reserved number as the operator set it, and says so', () => {
    imported([{ number: '+442079460001' }, { number: '+442079460002' }, { number: '+442079460003' }], 1);
    retireNumber(store.db, '+442079460001' as E164);
    addToPool(store.db, [{ number: '+442079460002', state: 'reserved' }], { now: 2 });
    const revision = poolRevision(store.db);
    const change = imported([{ number: '+442079460001' }, { number: '+442079460002' }, { number: '+442079460003' }]);
    expect(change).toEqual({
      added: 0,
      updated: 0,
      unchanged: 3,
      kept: [
        { number: '+442079460001', state: 'retired', reason: 'the row names no state' },
        { number: '+442079460002', state: 'reserved', reason: 'the row names no state' },
      ],
    });
    expect(states()).toEqual({ '+442079460001': 'retired', '+442079460002': 'reserved', '+442079460003': 'available' });
    expect(poolRevision(store.db)).toBe(revision);
  });

  it('no row puts a retired number back in service, whatever state it names; pool add does', () => {
    imported([{ number: '+442079460001' }, { number: '+442079460002' }], 1);
    retireNumber(store.db, '+442079460001' as E164);
    retireNumber(store.db, '+442079460002' as E164);
    const change = imported([{ number: '+442079460001', state: 'available' }, { number: '+442079460002', state: 'reserved' }]);
    expect(change.updated).toBe(0);
    expect(change.kept.map((k) => [k.number, k.state])).toEqual([
      ['+442079460001', 'retired'],
      ['+442079460002', 'retired'],
    ]);
    expect(change.kept[0]!.reason).toMatch(/never puts a retired number back in service; "vnum pool add" does/);
    expect(states()).toEqual({ '+442079460001': 'retired', '+442079460002': 'retired' });
    // The operator's own command does.
    expect(addToPool(store.db, [{ number: '+442079460001' }], { now: 10 })).toMatchObject({ updated: 1, kept: [] });
    expect(states()['+442079460001']).toBe('available');
  });

  it('a row that names a state sets it otherwise: reserving, freeing a reserved number, retiring', () => {
    imported([{ number: '+442079460001' }, { number: '+442079460002', state: 'reserved' }, { number: '+442079460003' }], 1);
    const change = imported([
      { number: '+442079460001', state: 'reserved' },
      { number: '+442079460002', state: 'available' },
      { number: '+442079460003', state: 'retired' },
      { number: '+442079460004', state: 'reserved' },
    ]);
    expect(change).toEqual({ added: 1, updated: 3, unchanged: 0, kept: [] });
    expect(states()).toEqual({
      '+442079460001': 'reserved',
      '+442079460002': 'available',
      '+442079460003': 'retired',
      '+442079460004': 'reserved',
    });
  });

  it('the rule itself, for every current state and every row', () => {
    const rows = [undefined, 'available', 'reserved', 'retired'] as const;
    const table = (['new', 'available', 'reserved', 'retired'] as const).map((current) =>
      rows.map((named) => {
        const r = importedState(current === 'new' ? undefined : { country: 'GB', state: current, retiredBy: current === 'retired' ? 'operator' : null }, named, 'import');
        return `${r.state}${r.kept ? '*' : ''}`;
      }),
    );
    // rows: current state; columns: the row names none, available, reserved, retired; * kept
    expect(table).toEqual([
      ['available', 'available', 'reserved', 'retired'],
      ['available', 'available', 'reserved', 'retired'],
      ['reserved*', 'available', 'reserved', 'retired'],
      ['retired*', 'retired*', 'retired*', 'retired'],
    ]);
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

  it('reads a headerless export whose numbers are written with spaces (no header is taken for data)', () => {
    expect(parsePoolCsv('+44 20 7946 0005,GB,available\n+44 20 7946 0006,GB,reserved\n')).toEqual([
      { line: 1, number: '+44 20 7946 0005', country: 'GB', state: 'available' },
      { line: 2, number: '+44 20 7946 0006', country: 'GB', state: 'reserved' },
    ]);
    expect(parsePoolCsv('(020) 7946-0007,GB\n')).toEqual([{ line: 1, number: '(020) 7946-0007', country: 'GB', state: undefined }]);
    // A header is a row naming a known column, or one without a digit.
    expect(parsePoolCsv('E164,Region\n+442079460001,GB\n')).toEqual([{ line: 2, number: '+442079460001', country: 'GB', state: undefined }]);
    expect(() => parsePoolCsv('DID Number,Region\n+442079460001,GB\n')).toThrow(/line 1: header has no number column/);
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

  it('refuses text after a closing quote, and a quote inside an unquoted field, naming the line: never a number made of what is left', () => {
    expect(() => parsePoolCsv('+442079460001,GB\n"+4420"x,GB\n')).toThrow(/^line 2: text after a closing quote/);
    expect(() => parsePoolCsv('number\n+44"2079460001\n')).toThrow(/^line 2: a quote inside a field that does not start with one/);
    expect(() => parseCsvRows('a\nb,"x\n\ny\n')).toThrow('lines 2 to 4: unterminated quoted field');
  });

  it('names the line a row starts on, when a quoted field spans lines', () => {
    expect(parseCsvRows('a\n\n"b\nc" , "d"\ne\n')).toEqual([
      { line: 1, cells: ['a'] },
      { line: 3, cells: ['b\nc', 'd'] },
      { line: 5, cells: ['e'] },
    ]);
  });
});
