import type { FastifySchema } from 'fastify';
import type { Scope } from '../access/api-keys.js';

/**
 * The API's routes as the OpenAPI document (./openapi.ts) defines them: for
 * each operation its method and path, the scope a key needs, and the request
 * schemas fastify validates (path, query and body, unknown fields and
 * parameters refused). The handlers are keyed by operationId.
 */
export interface RouteDefinition {
  operationId: string;
  method: 'GET' | 'POST';
  /** As the document writes it: /v1/sessions/{id}. */
  path: string;
  /** As fastify routes it: /v1/sessions/:id. */
  url: string;
  /** undefined: public (no key). */
  scope: Scope | undefined;
  schema: FastifySchema;
  /** The media types the request body may have; empty: the operation takes no body. */
  bodyTypes: string[];
  bodyRequired: boolean;
}

type Json = Record<string, unknown>;

interface ParameterObject {
  name: string;
  in: 'path' | 'query';
  required?: boolean;
  schema: Json;
}

/** The document's schemas with every local `$ref` replaced by what it names (request schemas have no cycles). */
function resolved(value: unknown, doc: Json): unknown {
  if (Array.isArray(value)) return value.map((item) => resolved(item, doc));
  if (value === null || typeof value !== 'object') return value;
  const ref = (value as Json).$ref;
  if (typeof ref === 'string') {
    const target = ref
      .replace(/^#\//, '')
      .split('/')
      .reduce<unknown>((node, key) => (node as Json)[key.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
    if (target === undefined) throw new Error(`unresolved $ref ${ref}`);
    const { $ref: _ignored, ...rest } = value as Json;
    return { ...(resolved(target, doc) as Json), ...(resolved(rest, doc) as Json) };
  }
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, resolved(item, doc)]));
}

/** Parameters of one kind as the object schema fastify validates: unknown ones refused. */
function parameterSchema(parameters: ParameterObject[], where: 'path' | 'query'): Json | undefined {
  const mine = parameters.filter((p) => p.in === where);
  if (mine.length === 0 && where === 'path') return undefined;
  return {
    type: 'object',
    properties: Object.fromEntries(mine.map((p) => [p.name, p.schema])),
    required: mine.filter((p) => p.required).map((p) => p.name),
    additionalProperties: false,
  };
}

export function routeDefinitions(document: Json): RouteDefinition[] {
  const routes: RouteDefinition[] = [];
  for (const [path, item] of Object.entries(document.paths as Json)) {
    for (const [method, raw] of Object.entries(item as Json)) {
      const operation = resolved(raw, document) as {
        operationId: string;
        security: Array<Record<string, string[]>>;
        parameters?: ParameterObject[];
        requestBody?: { required?: boolean; content: Record<string, { schema: Json }> };
      };
      const parameters = operation.parameters ?? [];
      const bodyTypes = Object.keys(operation.requestBody?.content ?? {});
      // Several media types: the handler reads the body itself (fastify validates one schema per route).
      const bodySchemas = bodyTypes.map((type) => operation.requestBody!.content[type]!.schema);
      if (bodyTypes.length > 1 && bodySchemas.some((b) => b.type === 'object')) {
        throw new Error(`${operation.operationId}: a body of several media types cannot be an object schema`);
      }
      const schema: FastifySchema = {};
      const params = parameterSchema(parameters, 'path');
      if (params) schema.params = params;
      schema.querystring = parameterSchema(parameters, 'query');
      if (bodyTypes.length === 1) schema.body = bodySchemas[0];
      routes.push({
        operationId: operation.operationId,
        method: method.toUpperCase() as 'GET' | 'POST',
        path,
        url: path.replace(/\{(\w+)\}/g, ':$1'),
        scope: operation.security[0]?.apiKey?.[0] as Scope | undefined,
        schema,
        bodyTypes,
        bodyRequired: operation.requestBody?.required ?? false,
      });
    }
  }
  return routes;
}
