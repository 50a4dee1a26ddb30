/**
 * For the API tests: the real `vnum api` (the built CLI, its own process, a
 * real database file, real HTTP), and a client that checks every response
 * against the OpenAPI document: a status the operation does not document, a
 * content type it does not document, or a body its schema refuses fails the
 * test. That is the contract test: code and document cannot drift apart
 * without the suite saying where.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, expect } from 'vitest';
import { freePort } from './net.js';
import { cliOnDb, VNUM_BIN, type CliResult } from './cli.js';

export { freePort };

type Json = Record<string, unknown>;

export const DOCUMENT_PATH = new URL('../../docs/openapi.json', import.meta.url);
export const DOCUMENT = JSON.parse(readFileSync(DOCUMENT_PATH, 'utf8')) as Json;

export interface ApiProcess {
  url: string;
  port: number;
  pid: number;
  child: ChildProcess;
  /** Everything it wrote to stderr (its log) so far. */
  log(): string;
  /** SIGTERM (or another signal), and its exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartApiOptions {
  db: string;
  env?: Record<string, string | undefined>;
  args?: string[];
  port?: number;
  /** https: the process serves TLS; requests to it skip certificate checks. */
  tls?: boolean;
}

/** The built `vnum api` on a free port, once its log says it serves. */
export async function startApi(options: StartApiOptions): Promise<ApiProcess> {
  const port = options.port ?? (await freePort());
  const env: Record<string, string | undefined> = {
    ...process.env,
    VNUM_DEFAULT_COUNTRY: 'GB',
    VNUM_DB: undefined,
    VNUM_API_HOST: undefined,
    VNUM_API_PORT: undefined,
    VNUM_API_RATE_LIMIT: undefined,
    VNUM_LOG_LEVEL: 'debug',
    ...options.env,
  };
  const child = spawn(process.execPath, [VNUM_BIN, '--db', options.db, 'api', '--host', '127.0.0.1', '--port', String(port), ...(options.args ?? [])], {
    env: Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vnum api did not start in 20 s: ${stderr}`)), 20_000);
    const check = (): void => {
      if (stderr.includes('"msg":"vnum api serving this store"')) {
        clearTimeout(timer);
        child.stderr!.off('data', check);
        resolve();
      }
    };
    child.stderr!.on('data', check);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`vnum api exited (${code ?? signal}) before serving: ${stderr}`));
    });
  });
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    child,
    log: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  /** Parsed JSON (every response of this API is JSON). */
  body: T;
  contentType: string;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  /** A value sent as JSON (with Content-Type application/json unless `contentType` says otherwise). */
  json?: unknown;
  /** Bytes or text sent as they are. */
  raw?: string | Buffer;
  contentType?: string;
  /** The API key; null: send no Authorization header; undefined: the client's own. */
  key?: string | null;
  headers?: Record<string, string>;
  /** Give up (the fetch rejects with a TimeoutError) after this long; default: wait as long as it takes. */
  timeoutMs?: number;
}

/** The OpenAPI path template a concrete path matches, if any. */
function templateOf(path: string): string | undefined {
  const paths = Object.keys(DOCUMENT.paths as Json);
  const exact = paths.find((p) => p === path);
  if (exact) return exact;
  return paths.find((p) => new RegExp(`^${p.replace(/[.]/g, '\\.').replace(/\{\w+\}/g, '[^/]+')}$`).test(path));
}

const esc = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1');

class Contract {
  private readonly ajv: Ajv2020;
  private readonly validators = new Map<string, ValidateFunction>();
  /** (template, method, status, media type) seen in responses: what the tests covered. */
  readonly seen = new Set<string>();

  constructor() {
    this.ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
    addFormats.default(this.ajv);
    for (const keyword of ['openapi', 'info', 'paths', 'components', 'servers', 'tags', 'webhooks', 'security', 'jsonSchemaDialect', 'discriminator', 'xml', 'externalDocs', 'example']) {
      this.ajv.addKeyword(keyword);
    }
    this.ajv.addSchema(DOCUMENT, 'openapi.json');
  }

  private responseObject(template: string, method: string, status: number): { pointer: string; content: Json } | undefined {
    const operation = (DOCUMENT.paths as Record<string, Record<string, Json>>)[template]?.[method];
    if (operation === undefined) return undefined;
    const responses = operation.responses as Record<string, Json>;
    let response = responses[String(status)];
    let pointer = `#/paths/${esc(template)}/${method}/responses/${status}`;
    if (response === undefined) return undefined;
    if (typeof response.$ref === 'string') {
      pointer = response.$ref;
      response = (DOCUMENT.components as Record<string, Record<string, Json>>).responses![response.$ref.split('/').at(-1)!]!;
    }
    return { pointer, content: response.content as Json };
  }

  check(method: string, path: string, status: number, contentType: string, body: unknown): void {
    const template = templateOf(path);
    const what = `${method.toUpperCase()} ${path} -> ${status} ${contentType}`;
    const media = contentType.split(';')[0]!.trim();
    let pointer: string;
    if (template === undefined || (DOCUMENT.paths as Record<string, Json>)[template]![method] === undefined) {
      // Not an operation of the document: only "no such resource" may come back, as a problem.
      if (status !== 404 && status !== 429) throw new Error(`contract: ${what}: no such operation, so only 404 may come back`);
      pointer = '#/components/schemas/Problem';
      if (media !== 'application/problem+json') throw new Error(`contract: ${what}: not a problem`);
      this.seen.add(`(no operation) ${status} ${media}`);
    } else {
      const response = this.responseObject(template, method, status);
      if (response === undefined) throw new Error(`contract: ${what}: status ${status} is not documented for ${method.toUpperCase()} ${template}`);
      if (!(media in response.content)) {
        throw new Error(`contract: ${what}: ${media} is not documented (documented: ${Object.keys(response.content).join(', ')})`);
      }
      pointer = `${response.pointer}/content/${esc(media)}/schema`;
      this.seen.add(`${method.toUpperCase()} ${template} ${status} ${media}`);
    }
    const key = `openapi.json${pointer}`;
    let validate = this.validators.get(key);
    if (!validate) {
      validate = this.ajv.compile({ $ref: key });
      this.validators.set(key, validate);
    }
    if (!validate(body)) {
      throw new Error(`contract: ${what}: the body does not match ${key}: ${this.ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 2000)}`);
    }
  }
}

export const contract = new Contract();

/**
 * An HTTP client for the API whose every answer is checked against the
 * document before the test sees it.
 */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly key: string | null = null,
  ) {}

  withKey(key: string | null): ApiClient {
    return new ApiClient(this.baseUrl, key);
  }

  async request<T = Json>(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const url = new URL(path, this.baseUrl);
    for (const [name, value] of Object.entries(options.query ?? {})) if (value !== undefined) url.searchParams.append(name, String(value));
    const headers: Record<string, string> = { ...options.headers };
    const key = options.key === undefined ? this.key : options.key;
    if (key !== null) headers.authorization = `Bearer ${key}`;
    let body: string | Blob | undefined;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers['content-type'] = options.contentType ?? 'application/json';
    } else if (options.raw !== undefined) {
      body = typeof options.raw === 'string' ? options.raw : new Blob([new Uint8Array(options.raw)]);
      if (options.contentType !== undefined) headers['content-type'] = options.contentType;
    }
    const response = await fetch(url, { method, headers, body, ...(options.timeoutMs !== undefined ? { signal: AbortSignal.timeout(options.timeoutMs) } : {}) });
    const text = await response.text();
    const contentType = response.headers.get('content-type') ?? '';
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`${method} ${url.pathname} -> ${response.status}: not JSON: ${text.slice(0, 500)}`);
    }
    contract.check(method.toLowerCase(), url.pathname, response.status, contentType, parsed);
    return { status: response.status, headers: response.headers, body: parsed as T, contentType };
  }

  get<T = Json>(path: string, options?: RequestOptions): Promise<ApiResponse<T>> {
    return this.request<T>('GET', path, options);
  }

  post<T = Json>(path: string, json?: unknown, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.request<T>('POST', path, json === undefined ? options : { ...options, json });
  }
}

/** A problem's code, status and content type, as every refusal must carry them. */
export function expectProblem(response: ApiResponse, status: number, code: string): void {
  const body = response.body as { code?: string; status?: number };
  if (response.status !== status || body.code !== code || !response.contentType.startsWith('application/problem+json')) {
    throw new Error(`expected ${status} ${code} problem, got ${response.status} ${response.contentType} ${JSON.stringify(body)}`);
  }
}

export interface UseApiOptions<K extends string> {
  /** The temporary folder's prefix (`vnum-api-sync-`). */
  prefix: string;
  /** Numbers `vnum pool add` puts in the pool first. */
  pool: readonly string[];
  /** The API keys `vnum apikey create` makes, by the name the test calls them: [--name, --scope]. */
  keys: Record<K, readonly [name: string, scope: string]>;
  /** The key the client sends. */
  as: NoInfer<K>;
  /** More of the server's environment (startApi's `env`). */
  env?: Record<string, string | undefined>;
}

export interface UseApi<K extends string> {
  readonly dir: string;
  readonly db: string;
  readonly server: ApiProcess;
  /** A client of the server with the key `as`. */
  readonly client: ApiClient;
  /** The secrets of the keys made, filled in before the file's tests run. */
  readonly keys: Record<K, string>;
  /** The built CLI on the database (VNUM_DEFAULT_COUNTRY GB, as the server's). */
  cli(...args: string[]): CliResult;
  /** `cli` with --json: what it printed, parsed (a non-zero exit throws, naming stderr). */
  cliJson(...args: string[]): any;
}

/**
 * For an API test file: once before its tests, a database in a fresh folder
 * with `pool` in it and `keys` made by the CLI, then `vnum api` on it; after
 * them, the server stopped and the folder removed.
 */
export function useApi<K extends string>(options: UseApiOptions<K>): UseApi<K> {
  let dir: string | undefined;
  let server: ApiProcess | undefined;
  let client: ApiClient | undefined;
  const keys = {} as Record<K, string>;
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useApi: only inside the tests and hooks of the file');
    return value;
  };
  const db = (): string => join(ready(dir), 'vnum.db');
  const { run: cli, json: cliJson } = cliOnDb(db);
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), options.prefix));
    const added = cli('pool', 'add', ...options.pool);
    expect(added.code, added.stderr).toBe(0);
    for (const [as, [name, scope]] of Object.entries(options.keys) as Array<[K, readonly [string, string]]>) {
      keys[as] = cliJson('apikey', 'create', '--name', name, '--scope', scope).key;
    }
    server = await startApi({ db: db(), env: options.env });
    client = new ApiClient(server.url, keys[options.as]);
  });
  afterAll(async () => {
    await server?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get dir() {
      return ready(dir);
    },
    get db() {
      return db();
    },
    get server() {
      return ready(server);
    },
    get client() {
      return ready(client);
    },
    keys,
    cli,
    cliJson,
  };
}
