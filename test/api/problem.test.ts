/**
 * Errors as problem details: one table from code to status, and every error
 * fastify can raise (its FST_ERR_* registry) comes out as one of our codes
 * with a status the document has a problem response for.
 */
import { errorCodes } from 'fastify';
import { describe, expect, it } from 'vitest';
import { openApiDocument } from '../../src/api/openapi.js';
import { frameworkError, problemOf, STATUS_OF, TITLE_OF } from '../../src/api/problem.js';
import { ErrorCode, VnumError } from '../../src/errors.js';

const documented = new Set(
  Object.keys((openApiDocument() as { components: { responses: Record<string, unknown> } }).components.responses).map((n) => Number(n.slice('Problem'.length))),
);
const codes = new Set<string>(Object.values(ErrorCode));

describe('the status table', () => {
  it('gives every code a 4xx or 5xx status and a title', () => {
    for (const code of Object.values(ErrorCode)) {
      expect(STATUS_OF[code], code).toBeGreaterThanOrEqual(400);
      expect(TITLE_OF[code], code).toMatch(/\w/);
    }
  });

  it('uses exactly the statuses the issue names, plus 415 for a content type the API does not take and 501 for what cluster mode cannot do', () => {
    expect(new Set(Object.values(STATUS_OF))).toEqual(new Set([400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 501, 503]));
  });

  it('is RFC 9457 with our code: type, title, status, detail, code, instance', () => {
    const problem = problemOf(new VnumError(ErrorCode.SessionConflict, 'session "o1" already exists with other parties', { differs: ['parties'] }), 'abc');
    expect(problem).toEqual({
      type: 'urn:vnum:problem:VNUM_SESSION_CONFLICT',
      title: TITLE_OF.VNUM_SESSION_CONFLICT,
      status: 409,
      detail: 'session "o1" already exists with other parties',
      code: 'VNUM_SESSION_CONFLICT',
      instance: 'urn:uuid:abc',
      differs: ['parties'],
    });
  });
});

describe("fastify's own errors", () => {
  const all = Object.entries(errorCodes as unknown as Record<string, new (...args: unknown[]) => Error & { code: string; statusCode?: number }>);

  it(`all ${all.length} FST_ERR_* codes map to one of ours, with a documented status`, () => {
    expect(all.length).toBeGreaterThan(50);
    for (const [name, FastifyErrorClass] of all) {
      const error = new FastifyErrorClass('x', 'y', 'z');
      const ours = frameworkError(error as never);
      expect(ours, name).toBeInstanceOf(VnumError);
      expect(codes.has(ours.code), `${name} -> ${ours.code}`).toBe(true);
      expect(documented.has(STATUS_OF[ours.code]), `${name} -> ${STATUS_OF[ours.code]}`).toBe(true);
      // a client error stays a client error, a server error a server error
      if (error.statusCode !== undefined) expect(STATUS_OF[ours.code] >= 500, name).toBe(error.statusCode >= 500);
    }
  });

  it('the ones a client can cause get their own codes', () => {
    const of = (name: string) => frameworkError(new (errorCodes as never as Record<string, new () => never>)[name]!()).code;
    expect(of('FST_ERR_CTP_INVALID_JSON_BODY')).toBe('VNUM_INVALID_JSON');
    expect(of('FST_ERR_CTP_EMPTY_JSON_BODY')).toBe('VNUM_INVALID_JSON');
    expect(of('FST_ERR_CTP_BODY_TOO_LARGE')).toBe('VNUM_BODY_TOO_LARGE');
    expect(of('FST_ERR_CTP_INVALID_MEDIA_TYPE')).toBe('VNUM_UNSUPPORTED_MEDIA_TYPE');
    expect(of('FST_ERR_NOT_FOUND')).toBe('VNUM_NOT_FOUND');
    expect(of('FST_ERR_BAD_URL')).toBe('VNUM_INVALID_ARGUMENT');
  });

  it('a schema failure names each field by a JSON pointer', () => {
    const error = Object.assign(new Error('body/x'), {
      validation: [
        { instancePath: '', keyword: 'additionalProperties', params: { additionalProperty: 'extra' }, message: 'must NOT have additional properties' },
        { instancePath: '/parties/0/number', keyword: 'type', params: { type: 'string' }, message: 'must be string' },
      ],
      validationContext: 'body',
      code: 'FST_ERR_VALIDATION',
      statusCode: 400,
    });
    const ours = frameworkError(error as never);
    expect(ours.code).toBe('VNUM_INVALID_ARGUMENT');
    expect(problemOf(ours, undefined).errors).toEqual([
      { pointer: '/body/extra', detail: '/body/extra: unknown field (refused, not ignored)' },
      { pointer: '/body/parties/0/number', detail: '/body/parties/0/number: must be string' },
    ]);
  });

  it('an unexpected error says nothing of its text to the client (it is in the log)', () => {
    const ours = frameworkError(new TypeError('secret detail +447911123456') as never);
    expect(ours.code).toBe('VNUM_INTERNAL');
    expect(ours.message).not.toMatch(/secret|447911/);
  });
});
