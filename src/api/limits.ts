/** The HTTP API's fixed bounds: each is in the OpenAPI document and the README's API section. */
export const API_LIMITS = Object.freeze({
  /** A JSON body: a session create is under 1 KiB; a pool add of 1,000 numbers about 25 KiB. */
  jsonBodyBytes: 64 * 1024,
  /** A CSV upload (`POST /v1/pool/import`): about 100,000 numbers. */
  csvBodyBytes: 4 * 1024 * 1024,
  /** Items per page of a list. */
  pageMax: 1000,
  pageDefault: 100,
  /** Numbers in one `POST /v1/pool`. */
  poolAddMax: 1000,
  /** How long a release may wait for its calls to hang up: an HTTP client gives up long before the CLI's 10 minutes. */
  releaseWaitMaxMs: 60_000,
  /** The longest opaque cursor this API ever hands out, with room. */
  cursorChars: 200,
});
