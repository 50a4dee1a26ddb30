/**
 * The OpenAPI document: valid OpenAPI 3.1 by a well-kept validator (and that
 * check can fail), the committed docs/openapi.json equal to what the API
 * serves, every operation backed by a handler, every error code's status
 * documented. Responses are checked against it in every API test
 * (test/helpers/api.ts).
 */
import { validate } from '@readme/openapi-parser';
import { describe, expect, it } from 'vitest';
import { HANDLERS } from '../../src/api/app.js';
import { openApiDocument } from '../../src/api/openapi.js';
import { STATUS_OF } from '../../src/api/problem.js';
import { routeDefinitions } from '../../src/api/routes.js';
import { ErrorCode } from '../../src/errors.js';
import { DOCUMENT } from '../support/api.js';

type Json = Record<string, any>;

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1 (@readme/openapi-parser), with no warning', async () => {
    const result = await validate(structuredClone(openApiDocument()) as never);
    expect('errors' in result ? result.errors : []).toEqual([]);
    expect(result.warnings).toEqual([]);
    expect(result.valid).toBe(true);
    expect(openApiDocument().openapi).toBe('3.1.0');
  });

  it('the check can fail: a duplicate operationId, a $ref to nothing and an unknown field are reported', async () => {
    const duplicate = structuredClone(openApiDocument()) as Json;
    duplicate.paths['/v1/stats'].get.operationId = 'health';
    expect((await validate(duplicate as never)).valid).toBe(false);
    const dangling = structuredClone(openApiDocument()) as Json;
    dangling.paths['/v1/stats'].get.responses['200'].content['application/json'].schema = { $ref: '#/components/schemas/Nope' };
    expect((await validate(dangling as never)).valid).toBe(false);
    const misspelt = structuredClone(openApiDocument()) as Json;
    misspelt.paths['/v1/stats'].get.responsez = {};
    expect((await validate(misspelt as never)).valid).toBe(false);
  });

  it('docs/openapi.json is the document the API serves (npm run openapi writes it)', () => {
    expect(DOCUMENT, 'docs/openapi.json is stale: run npm run openapi').toEqual(JSON.parse(JSON.stringify(openApiDocument())));
  });

  it('every operation has a handler and every handler an operation', () => {
    const operations = routeDefinitions(openApiDocument()).map((r) => r.operationId).sort();
    expect(operations).toEqual(Object.keys(HANDLERS).sort());
    expect(operations.length).toBe(16);
  });

  it('every route refuses unknown query parameters and path parameters, and every JSON body unknown fields', () => {
    for (const route of routeDefinitions(openApiDocument())) {
      expect((route.schema.querystring as Json).additionalProperties, route.operationId).toBe(false);
      if (route.schema.params) expect((route.schema.params as Json).additionalProperties, route.operationId).toBe(false);
      // A JSON body is an object that refuses unknown fields, except a provider's export (POST /v1/pool/sync), which is the provider's shape
      if (route.operationId === 'syncPool') expect(route.schema.body, route.operationId).toBeUndefined();
      else if (route.bodyTypes.includes('application/json')) expect((route.schema.body as Json).additionalProperties, route.operationId).toBe(false);
    }
  });

  it('every operation but the two public ones needs a key with a scope; the scopes are the four', () => {
    const scopes = Object.fromEntries(routeDefinitions(openApiDocument()).map((r) => [r.operationId, r.scope]));
    expect(scopes).toEqual({
      createSession: 'sessions',
      listSessions: 'read',
      getSession: 'read',
      releaseSession: 'sessions',
      listPool: 'read',
      addToPool: 'pool',
      importPool: 'pool',
      retireNumber: 'pool',
      setNumberHandling: 'pool',
      syncPool: 'pool',
      route: 'read',
      listCalls: 'read',
      stats: 'read',
      health: 'read',
      ready: undefined,
      openapi: undefined,
    });
  });

  it('documents a problem response for the status of every error code, and the codes in the Problem schema are all of ours', () => {
    const doc = openApiDocument() as Json;
    const documented = Object.keys(doc.components.responses).map((name) => Number(name.replace('Problem', '')));
    for (const [code, status] of Object.entries(STATUS_OF)) expect(documented, code).toContain(status);
    expect(doc.components.schemas.Problem.properties.code.enum.sort()).toEqual(Object.values(ErrorCode).sort());
    // each problem response names the codes that carry its status
    expect(doc.components.responses.Problem409.description).toMatch(/VNUM_SESSION_CONFLICT/);
    expect(doc.components.responses.Problem409.description).toMatch(/VNUM_POOL_EXHAUSTED/);
  });
});
