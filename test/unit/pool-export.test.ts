/**
 * Reading a provider's export (src/pool/export.ts): the formats, the JSON
 * shape, and every hostile form an attacker-controlled export can take,
 * each refused naming its place.
 */
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { jsonSyntaxError, readExport } from '../../src/pool/export.js';
import { validateEntries } from '../../src/pool/pool.js';
import { errorOf } from '../support/errors.js';

const bytes = (text: string) => Buffer.from(text, 'utf8');
const read = (text: string | Buffer, hints: Parameters<typeof readExport>[1] = {}) => readExport(typeof text === 'string' ? bytes(text) : text, hints);
const refusal = (text: string | Buffer, hints: Parameters<typeof readExport>[1] = {}) => errorOf(() => read(text, hints));

describe('the JSON shape', () => {
  it('reads an array of numbers as strings, or of objects with a number field', () => {
    expect(read('["+442079460001", "+44 20 7946 0002"]').entries).toEqual([
      { number: '+442079460001', at: 'item 0' },
      { number: '+44 20 7946 0002', at: 'item 1' },
    ]);
    expect(read('[{"number":"+442079460001","country":"GB","state":"Reserved","monthly_cost":"1.00"}]')).toEqual({
      format: 'json',
      entries: [{ number: '+442079460001', country: 'GB', state: 'reserved', at: 'item 0' }],
    });
  });

  it('knows the field names providers use, as the CSV header does (phone_number, phoneNumber, msisdn, iso_country, status, …)', () => {
    const entries = read(
      JSON.stringify([
        { phone_number: '+442079460001', iso_country: 'GB' },
        { phoneNumber: '+442079460002', countryCode: 'GB', status: null },
        { msisdn: '442079460003', region: 'GB' },
        { DID: '+442079460004', Status: 'retired' },
      ]),
    ).entries;
    expect(entries.map((e) => [e.number, e.country, e.state])).toEqual([
      ['+442079460001', 'GB', undefined],
      ['+442079460002', 'GB', undefined],
      ['442079460003', 'GB', undefined],
      ['+442079460004', undefined, 'retired'],
    ]);
  });

  it('reads the list under "numbers", or an object\'s only list (a list API\'s {"data": [...]})', () => {
    expect(read('{"numbers":["+442079460001"],"exported_at":"2026-11-25"}').entries).toEqual([{ number: '+442079460001', at: 'item numbers[0]' }]);
    expect(read('{"meta":{"total":1,"next_page_url":null},"data":[{"phone_number":"+442079460001"}]}').entries).toEqual([
      { number: '+442079460001', country: undefined, state: undefined, at: 'item data[0]' },
    ]);
    expect(read('{"numbers":["+442079460001"],"errors":[]}').entries).toHaveLength(1);
    expect(refusal('{"data":[],"errors":[]}').message).toBe('the export holds 2 lists ("data", "errors"): name the one of numbers "numbers"');
    expect(refusal('{"count":0}').message).toMatch(/^the export is an object without a list/);
    expect(refusal('"+442079460001"', { format: 'json' }).message).toMatch(/^the export is a JSON string, not a list of numbers/);
    expect(refusal('null', { format: 'json' }).message).toMatch(/^the export is null, not a list/);
  });

  it('refuses one page of a paginated list: a sync needs all of it', () => {
    for (const [json, at] of [
      ['{"data":[],"next":"https://api.example/numbers?page=2"}', 'next'],
      ['{"incoming_phone_numbers":[],"next_page_uri":"/2010-04-01/x?Page=1"}', 'next_page_uri'],
      ['{"data":[],"meta":{"nextPageToken":"abc"}}', 'meta.nextPageToken'],
      ['{"objects":[],"links":{"next":"/v1/numbers?offset=20"}}', 'links.next'],
    ] as const) {
      expect(refusal(json).message, json).toBe(`the export is one page of several ("${at}" is set): a sync needs the whole list in one export`);
    }
    expect(read('{"data":["+442079460001"],"next":null,"meta":{"next_page":""}}').entries).toHaveLength(1);
  });

  it('refuses every item that is not plainly a number, naming it', () => {
    const cases: Array<[string, string]> = [
      ['[442079460001]', 'item 0 is a JSON number: each item is a number as a string, or an object with a "number" field'],
      ['[{"number":442079460001}]', 'item 0: "number" is a JSON number, not a string (a JSON number loses a leading + or 0: write the number as a string)'],
      ['["+442079460001",{"country":"GB"}]', 'item 1: no number (a field named one of: number, did, phone, phone_number, phonenumber, e164, msisdn, virtual_number)'],
      ['[{"number":"+442079460001","phone_number":"+442079460002"}]', 'item 0: "number" and "phone_number" disagree'],
      ['[{"number":["+442079460001"]}]', 'item 0: "number" is an array, not a string'],
      ['[{"number":"+442079460001","state":"active"}]', 'item 0: unknown state "active" (use available, reserved, retired)'],
      ['[{"number":"+442079460001","state":true}]', 'item 0: "state" is a JSON boolean, not a string'],
      ['[null]', 'item 0 is null: each item is a number as a string, or an object with a "number" field'],
      ['[[["+442079460001"]]]', 'item 0 is an array: each item is a number as a string, or an object with a "number" field'],
      ['["  "]', 'item 0: no number'],
    ];
    for (const [json, message] of cases) {
      const error = refusal(json);
      expect(error.code, json).toBe(ErrorCode.InvalidExport);
      expect(error.message, json).toBe(message);
    }
  });

  it('has no prototype to pollute: __proto__ and constructor are plain fields', () => {
    const entries = read('[{"__proto__":{"number":"+442079460009"},"number":"+442079460001","constructor":"x"}]').entries;
    expect(entries).toEqual([{ number: '+442079460001', country: undefined, state: undefined, at: 'item 0' }]);
    expect(({} as Record<string, unknown>).number).toBeUndefined();
  });

  it('places a syntax error by line and column, and says when the text ends early (a download cut short)', () => {
    expect(refusal('[\n  {"number": "+442079460001"},\n  {"number": +442079460002}\n]').message).toBe('not valid JSON at line 3, column 14: unexpected "+"');
    expect(refusal('[{"number":"+442079460001"},\n{"number":"+4420794').message).toBe('not valid JSON: it ends early at line 2, column 20 (a download cut short?)');
    expect(refusal('["+442079460001",]').message).toBe('not valid JSON at line 1, column 18: unexpected "]"');
    expect(refusal('["a\u0001b"]').message).toBe('not valid JSON at line 1, column 4: unexpected "\\\\x01"');
    expect(refusal('{"numbers":["+442079460001"]} trailing').message).toBe('not valid JSON at line 1, column 31: unexpected "t"');
    expect(refusal('[{"number" "+442079460001"}]').message).toBe('not valid JSON at line 1, column 12: unexpected "\\""');
    expect(refusal("['+442079460001']").message).toBe('not valid JSON at line 1, column 2: unexpected "\'"');
    expect(refusal('[01]').message).toBe('not valid JSON at line 1, column 3: unexpected "1"');
    expect(refusal('["\\x41"]').message).toBe('not valid JSON at line 1, column 4: unexpected "x"');
    // The scan agrees with JSON.parse on what is valid.
    for (const valid of ['[]', '{"a":[1,-2.5e3,true,false,null,"\\u00e9\\n"]}', ' [ "x" ] ']) expect(jsonSyntaxError(valid)).toBe('not valid JSON');
  });

  it('survives nesting a million deep without a stack overflow', () => {
    const deep = `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`;
    expect(refusal(deep).message).toBe('item 0 is an array: each item is a number as a string, or an object with a "number" field');
    expect(refusal('['.repeat(1_000_000)).message).toMatch(/^not valid JSON: it ends early at line 1, column 1000001/);
  });
});

describe('formats, encodings and content types', () => {
  it('takes the format from --format, else the Content-Type, else the file name, else the first character', () => {
    const json = '["+442079460001"]';
    expect(read(json).format).toBe('json');
    expect(read('+442079460001\n').format).toBe('csv');
    // Read as CSV because the name says so: csv-parse refuses the quote inside a field.
    expect(refusal(json, { fileName: 'dids.csv' })).toMatchObject({ code: ErrorCode.InvalidCsv, message: expect.stringMatching(/^line 1: a quote inside a field/) });
    expect(refusal('+442079460001', { fileName: 'dids.JSON' }).message).toBe('not valid JSON at line 1, column 1: unexpected "+"');
    expect(read(json, { contentType: 'application/json; charset=utf-8' }).format).toBe('json');
    expect(read(json, { contentType: 'application/vnd.api+json' }).format).toBe('json');
    expect(read('number\n+442079460001\n', { contentType: 'text/csv; charset="UTF-8"; header=present' }).format).toBe('csv');
    expect(read(json, { contentType: 'application/octet-stream' }).format).toBe('json');
    expect(read(json, { contentType: 'text/plain' }).format).toBe('json');
    expect(read(json, { contentType: 'text/csv', format: 'json' }).format).toBe('json');
  });

  it('refuses a web page, XML or anything else a server declares, and charsets other than UTF-8', () => {
    expect(refusal('<html>Sign in</html>', { contentType: 'text/html; charset=utf-8' }).message).toBe(
      'the server sent text/html, not CSV or JSON (a web page: an error or login page?)',
    );
    expect(refusal('<numbers/>', { contentType: 'application/xml' }).message).toBe('the server sent application/xml, not CSV or JSON');
    expect(refusal('["+442079460001"]', { contentType: 'application/json; charset=iso-8859-1' }).message).toBe(
      'the server sent the export as iso-8859-1: vnum reads UTF-8 exports',
    );
    // --format does not make a web page an export.
    expect(refusal('<html/>', { contentType: 'text/html', format: 'csv' }).code).toBe(ErrorCode.InvalidExport);
  });

  it('reads UTF-8 with or without a byte-order mark; refuses UTF-16, Latin-1, gzip, ZIP and emptiness', () => {
    expect(read(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes('["+442079460001"]')])).entries).toHaveLength(1);
    expect(read(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes('number\n+442079460001\n')])).entries).toEqual([
      { line: 2, number: '+442079460001', country: undefined, state: undefined },
    ]);
    expect(refusal(Buffer.from('\ufeffnumber\n+442079460001\n', 'utf16le')).message).toBe('the export is UTF-16 text: save it as UTF-8');
    expect(refusal(Buffer.from('number,region\n+442079460001,Île\n', 'latin1')).message).toBe(
      'line 2: the export is not UTF-8 text (a Latin-1 or Windows file? save it as UTF-8)',
    );
    expect(refusal(gzipSync('number\n+442079460001\n')).message).toBe('the export is a gzip file: decompress it first');
    expect(refusal(Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0])).message).toBe('the export is a ZIP file (an .xlsx spreadsheet?): export it as CSV');
    expect(refusal('').message).toBe('the export is empty');
    expect(refusal(' \n\t\n').message).toBe('the export is empty');
  });
});

describe('hostile numbers and cells never reach the pool', () => {
  const validate = (text: string) => errorOf(() => validateEntries(read(text).entries, 'GB'));

  it('refuses formula-looking cells, other scripts\' digits, letters, and a party-looking number written oddly, naming the line or item', () => {
    const cases: Array<[string, RegExp]> = [
      // Quotes inside it: not even CSV (csv-parse); without them, not a number.
      ['number\n+442079460001\n=HYPERLINK("http://evil","+442079460002")\n', /^line 3: a quote inside a field/],
      ['number\n+442079460001\n=HYPERLINK(A1)\n', /^line 3: invalid number "=HYPERLINK\(A1\)"/],
      ['number\n@SUM(1+1)*cmd|\' /C calc\'!A0\n', /^line 2: invalid number "@SUM/],
      ['number\n-2+3+cmd|\' /C calc\'!A0\n', /^line 2: invalid number/],
      ['number,country\n+442079460001,=1+1\n', /^line 2: unknown country "=1\+1"/],
      ['number\n＋４４２０７９４６０００１\n', /^line 2: invalid number/],
      ['number\n٠٢٠٧٩٤٦٠٠٠١\n', /^line 2: invalid number/],
      ['number\ntel:+442079460001\n', /^line 2: invalid number/],
      ['["+442079460001\\u0000"]', /^item 0: invalid number/],
      ['["+44207946000١"]', /^item 0: invalid number/],
      ['["+442079460001;ext=1"]', /^item 0: invalid number/],
      ['["+4420794600011111111111111111111111111111111111111111111"]', /^item 0: invalid number "\+442079460001{28}…": only digits/],
    ];
    for (const [text, message] of cases) expect(validate(text).message, text).toMatch(message);
  });

  it('refuses one number listed twice with conflicting data, naming both places', () => {
    expect(validate('number,state\n+442079460001,available\n020 7946 0001,retired\n').message).toBe(
      'line 3: +442079460001 is listed twice with different country or state (first at line 2)',
    );
    expect(validate('[{"number":"+442079460001"},{"number":"+442079460001","state":"reserved"}]').message).toBe(
      'item 1: +442079460001 is listed twice with different country or state (first at item 0)',
    );
  });
});
