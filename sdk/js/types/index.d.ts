// Type declarations for relayapi-tokens, kept by hand next to src/. test/exports.test.js checks that the
// runtime exports and these declarations name the same things, and `npm run lint` compiles
// test/types-usage.ts against this file.

/** The `.rai` client config (docs/client-config.md) as a parsed JSON object. */
export interface RaiFile {
  version: 1;
  server: {
    scheme?: 'http' | 'https';
    host: string;
    port: number;
    base_path?: string;
  };
  crypto: SymmetricCrypto | EccBackendCrypto;
}

/** `crypto` of a symmetric `.rai`: one tenant key mints and verifies. */
export interface SymmetricCrypto {
  method: 'aes-256-gcm-hkdf-sha256';
  key_id: string;
  key: string;
  tenant_id: string;
  /** Unix seconds from which the key mints (default: always). */
  not_before?: number;
  /** Unix seconds from which the key no longer mints (default: never). */
  not_after?: number;
  previous_keys?: { key_id: string; key: string; not_before?: number; not_after?: number }[];
}

/**
 * `crypto` of an ecc backend-side `.rai` ("ecc files" in docs/client-config.md): it mints (signs with
 * `signing_key`, seals to `relay_public_key`) but cannot open tokens. The relay-side file is refused.
 */
export interface EccBackendCrypto {
  method: 'ecc-p256';
  tenant_id: string;
  signer_id: string;
  /** P-256 private scalar, unpadded base64url (43 characters). */
  signing_key: string;
  relay_key_id: string;
  /** SEC1 uncompressed P-256 point, unpadded base64url (87 characters). */
  relay_public_key: string;
  /** Unix seconds from which the signing key mints (default: always). */
  not_before?: number;
  /** Unix seconds from which the signing key no longer mints (default: never). */
  not_after?: number;
}

/** What `createTokenWithClaims` returns: the token and the claims it carries (`claims.jti` is its id). */
export interface MintedToken {
  token: string;
  claims: TokenClaims;
}

/** A `.rai` object, or the path (string or file URL) of a `.rai` file. */
export type RaiSource = RaiFile | string | URL;

/**
 * Options of `createToken` / `generateUrl`; `null` means "absent", like Python's `None`. The same
 * names (in snake_case), defaults and units as the Python SDK's `TokenOptions` (sdk/api.json).
 */
export interface CreateTokenOptions {
  /** The provider API key carried (encrypted) in the token. Exactly one of apiKey and keyRef. */
  apiKey?: string | null;
  /** Name of an API key held by the relay (`config.json` `api_keys`). */
  keyRef?: string | null;
  /** Maximum number of calls; default 100; `null` = unlimited. */
  maxCalls?: number | null;
  /** Lifetime in seconds; default 3600. */
  expireSeconds?: number;
  /** Provider name, `[a-z0-9_-]{1,32}`; default "openai". */
  provider?: string;
  /** "" (none), a JSON object text, or an object with only `rep_m` (forced model). */
  extInfo?: string | { rep_m?: string } | null;
  /** Upstream base URL override (`https://...`); the relay must allow it. */
  baseUrl?: string | null;
  /** `[calls, seconds]`: at most `calls` calls in any window of `seconds`. */
  rateLimit?: readonly [calls: number, seconds: number] | null;
  /** At most this many requests of this token in flight at once. */
  maxConcurrent?: number | null;
  /** Allowed values of the request body's `model`. */
  allowedModels?: readonly string[] | null;
  /** Allowed provider-relative paths, e.g. "/chat/completions". */
  allowedEndpoints?: readonly string[] | null;
  /** Allowed browser origins, e.g. "https://app.example.com". */
  allowedOrigins?: readonly string[] | null;
  /** Allowed client IP ranges in CIDR form. */
  allowedIps?: readonly string[] | null;
  /** Ceiling for max_tokens / max_completion_tokens / max_output_tokens. */
  maxTokens?: number | null;
  /** "clamp" (relay default) or "reject". */
  maxTokensMode?: 'clamp' | 'reject' | null;
  /** End-user id written to the relay's access log; required with `userQuotas`. */
  userId?: string | null;
  /** The token's own budget over its whole life in tokens (input plus output, as the provider reports). */
  budgetTokens?: number | null;
  /** The token's own budget over its whole life in micro-units of the relay's price table currency. */
  budgetCost?: number | null;
  /**
   * Quotas of the end user `userId`, shared by every token of that user in the tenant: 1 to 3, one per
   * window, e.g. `[{ window: 'day', calls: 50, tokens: 200000, cost: 1000000 }]` (docs/budgets.md).
   */
  userQuotas?: readonly UserQuota[] | null;
  /**
   * Seconds a realtime (WebSocket) session of this token may stay open, 1 to 86400; the relay then
   * closes it with code 1008. Plain HTTP calls are not affected.
   */
  sessionSeconds?: number | null;
}

/** A quota window: the UTC calendar day, the UTC calendar month, or all time (never resets). */
export type QuotaWindow = 'day' | 'month' | 'all';

/** One entry of `userQuotas`: the window and at least one of the three limits. */
export interface UserQuota {
  window: QuotaWindow;
  /** Calls per window. */
  calls?: number | null;
  /** Input plus output tokens per window. */
  tokens?: number | null;
  /** Micro-units of money per window. */
  cost?: number | null;
}

/** Verified token claims (docs/token-format.md §5). */
export interface TokenClaims {
  jti: string;
  tid: string;
  iat: number;
  exp: number;
  prv: string;
  key?: string;
  kref?: string;
  url?: string;
  max?: number;
  ext?: { rep_m?: string };
  rate?: { n: number; s: number };
  conc?: number;
  models?: string[];
  paths?: string[];
  origins?: string[];
  ips?: string[];
  mtok?: number;
  mtok_mode?: 'clamp' | 'reject';
  uid?: string;
  bud?: { tok?: number; cost?: number };
  uq?: { w: QuotaWindow; calls?: number; tok?: number; cost?: number }[];
  ssec?: number;
}

export type Endpoint = '' | 'chat_completions' | 'images_generations' | 'embeddings' | `/${string}`;

/** Options of `generateUrl`: the token options plus the endpoint of the URL (default "", the base URL). */
export interface GenerateUrlOptions extends CreateTokenOptions {
  endpoint?: Endpoint;
}

export interface ClientOptions {
  /**
   * Seconds of silence accepted per wait (the answer's head, each read of its body); an answer that
   * keeps arriving is never cut. Default 600.
   */
  timeout?: number;
  /** Replaces the global fetch. */
  fetch?: typeof fetch;
}

export interface VerifyOptions {
  /** UTC seconds; default (absent or null) the system clock. */
  now?: number | null;
  /** Seconds of clock skew tolerated; default 0 (the relay's default is 60). */
  leeway?: number;
}

interface RequestBase {
  signal?: AbortSignal;
  /** Any other member is sent in the JSON body as it is (temperature, max_tokens, ...). */
  [param: string]: unknown;
}

export interface ChatRequest extends RequestBase {
  messages: unknown[];
  model: string;
  stream?: boolean;
}

export interface ImageRequest extends RequestBase {
  prompt: string;
}

export interface EmbeddingRequest extends RequestBase {
  input: unknown;
  model: string;
}

export interface HealthStatus {
  status: string;
  version: string;
  uptime_secs: number;
  [key: string]: unknown;
}

/** docs/admin-api.md usage document; `null` where the relay cannot know. */
export interface TokenUsage {
  token_id: string;
  tenant_id: string;
  calls_used: number;
  max_calls: number | null;
  remaining: number | null;
  first_used_at: number | null;
  last_used_at: number | null;
  expires_at: number | null;
  revoked: boolean;
  /** Tokens the provider reported for this token's calls (reservations in flight included). */
  tokens: TokenCounts;
  /** Micro-units of the relay's price table currency. No budget member: it is in the token's `bud`. */
  cost: number;
}

/** Tokens the provider reported, as the admin usage documents count them. */
export interface TokenCounts {
  input: number;
  output: number;
  cached_input: number;
}

/** One window of an end user's usage: what it holds now and when it starts over. */
export interface UsageWindow {
  /** "2026-12-07" for the day, "2026-12" for the month, null for all time. */
  period: string | null;
  calls: number;
  tokens: TokenCounts;
  /** Micro-units of the relay's price table currency. */
  cost: number;
  /** UTC seconds when the window resets; null for all time. */
  resets_at: number | null;
}

/** docs/admin-api.md `GET /admin/v1/users/{uid}/usage`. */
export interface UserUsage {
  tenant_id: string;
  user_id: string;
  windows: { day: UsageWindow; month: UsageWindow; all: UsageWindow };
}

export interface RevokeBeforeResult {
  tenant_id: string;
  revoked_before: number;
}

export const DEFAULT_MAX_CALLS: 100;
export const DEFAULT_EXPIRE_SECONDS: 3600;
export const DEFAULT_PROVIDER: 'openai';
export const DEFAULT_TIMEOUT_SECONDS: 600;
export const MAX_CLOCK_SKEW_SECONDS: 60;
export const ENDPOINTS: Readonly<
  Record<'' | 'chat_completions' | 'images_generations' | 'embeddings', string>
>;

export class TokenGenerator {
  /** @throws {ConfigError} */
  constructor(config: RaiSource);
  /** @throws {InvalidArgumentError} */
  createToken(options: CreateTokenOptions): string;
  /** createToken, also returning the claims (their `jti` is the id the admin calls take). @throws {InvalidArgumentError} */
  createTokenWithClaims(options: CreateTokenOptions): MintedToken;
  /**
   * Claims of an authentic token of this tenant; time not checked. @throws {InvalidTokenError}
   * @throws {InvalidArgumentError} with an ecc backend-side file, which cannot open tokens
   */
  decodeToken(token: string): TokenClaims;
  /** decodeToken plus the expiry checks. @throws {InvalidTokenError} (or TokenExpiredError, TokenNotYetValidError) */
  verifyToken(token: string, options?: VerifyOptions): TokenClaims;
}

type Chunk = Record<string, unknown>;
type ChunkStream = AsyncGenerator<Chunk, void, undefined>;

export class RelayAPIClient extends TokenGenerator {
  /** @throws {ConfigError} */
  constructor(config: RaiSource, options?: ClientOptions);
  /** `scheme://host[:port]` of the relay. */
  readonly origin: string;
  /** Header-form base URL (ends with "/", no token in it); pass the token as the provider SDK's API key. */
  readonly relayBaseUrl: string;
  /** Mints a token and returns its path-form URL: the base URL for a provider SDK's `baseURL` by default. */
  generateUrl(options: GenerateUrlOptions): string;
  /** Path-form URL of an existing token: base URL for `endpoint` "" (default), else the endpoint URL. */
  urlForToken(token: string, endpoint?: Endpoint): string;
  /** Query-form endpoint URL (`...?token=`); default endpoint "chat_completions". */
  queryUrlForToken(token: string, endpoint?: Exclude<Endpoint, ''>): string;
  chatCompletions(token: string, request: ChatRequest & { stream: true }): Promise<ChunkStream>;
  chatCompletions(token: string, request: ChatRequest & { stream?: false }): Promise<Chunk>;
  chatCompletions(token: string, request: ChatRequest): Promise<Chunk | ChunkStream>;
  imagesGenerations(token: string, request: ImageRequest): Promise<Chunk>;
  embeddings(token: string, request: EmbeddingRequest): Promise<Chunk>;
  healthCheck(options?: { signal?: AbortSignal }): Promise<HealthStatus>;
  getUsage(tokenOrId: string): Promise<TokenUsage>;
  /** Usage of one end user of this tenant per UTC day, month and all time. @throws {InvalidArgumentError} */
  getUserUsage(userId: string): Promise<UserUsage>;
  revoke(tokenOrId: string): Promise<TokenUsage>;
  /** @throws {InvalidArgumentError} when `ts` is not UTC seconds up to now + MAX_CLOCK_SKEW_SECONDS */
  revokeBefore(ts: number): Promise<RevokeBeforeResult>;
  /** @deprecated since 2.0: use generateUrl(options). */
  generateBaseUrl(options: CreateTokenOptions): string;
  /** @deprecated since 2.0: use queryUrlForToken. */
  generateQueryUrl(token: string, endpoint?: Exclude<Endpoint, ''>): string;
  /** @deprecated since 2.0: use chatCompletions(token, request). */
  chat(request: ChatRequest & { token: string; stream: true }): Promise<ChunkStream>;
  /** @deprecated since 2.0: use chatCompletions(token, request). */
  chat(request: ChatRequest & { token: string; stream?: false }): Promise<Chunk>;
  /** @deprecated since 2.0: use chatCompletions(token, request). */
  chat(request: ChatRequest & { token: string }): Promise<Chunk | ChunkStream>;
  /** @deprecated since 2.0: use imagesGenerations(token, request). */
  generateImage(request: ImageRequest & { token: string }): Promise<Chunk>;
  /** @deprecated since 2.0: use embeddings(token, request). */
  createEmbedding(request: EmbeddingRequest & { token: string }): Promise<Chunk>;
}

export class RelayAPIError extends Error {
  static readonly code: string;
  readonly code: string;
}

export class ConfigError extends RelayAPIError {
  static readonly code: 'ERR_CONFIG';
  readonly code: 'ERR_CONFIG';
  /** Dotted path of the offending field, e.g. "crypto.key". */
  readonly field: string;
}

export class InvalidArgumentError extends RelayAPIError {
  static readonly code: 'ERR_INVALID_ARGUMENT';
  readonly code: 'ERR_INVALID_ARGUMENT';
  /** Name of the offending option or argument as the caller spelled it, e.g. "maxCalls". */
  readonly param: string;
}

/** Token codes: the time subclasses keep their own. */
type TokenErrorCode =
  'ERR_INVALID_TOKEN' | 'ERR_TOKEN_EXPIRED' | 'ERR_TOKEN_NOT_YET_VALID' | 'ERR_TOKEN_LIFETIME_TOO_LONG';

/** Every verification failure, with no detail; the time subclasses below are authentic tokens. */
export class InvalidTokenError extends RelayAPIError {
  static readonly code: TokenErrorCode;
  readonly code: TokenErrorCode;
}

export class TokenExpiredError extends InvalidTokenError {
  static readonly code: 'ERR_TOKEN_EXPIRED';
  readonly code: 'ERR_TOKEN_EXPIRED';
  readonly claims: TokenClaims;
}

export class TokenNotYetValidError extends InvalidTokenError {
  static readonly code: 'ERR_TOKEN_NOT_YET_VALID';
  readonly code: 'ERR_TOKEN_NOT_YET_VALID';
  readonly claims: TokenClaims;
}

/** `exp - iat` exceeds the `maxLifetime` given to `checkTime`: authentic, refused. */
export class TokenLifetimeTooLongError extends InvalidTokenError {
  static readonly code: 'ERR_TOKEN_LIFETIME_TOO_LONG';
  readonly code: 'ERR_TOKEN_LIFETIME_TOO_LONG';
  readonly claims: TokenClaims;
}

export class APIError extends RelayAPIError {
  static readonly code: 'ERR_API';
  readonly code: 'ERR_API';
  /** HTTP status of the relay's answer. */
  readonly status: number;
  /** The relay's error code, e.g. "token_expired", "token_exhausted"; null when absent. */
  readonly errorCode: string | null;
  readonly errorType: string | null;
  readonly body: unknown;
  readonly headers: Headers;
  /** False when the relay sent `x-should-retry: false`. */
  readonly shouldRetry: boolean;
}

export class RelayConnectionError extends RelayAPIError {
  static readonly code: 'ERR_CONNECTION';
  readonly code: 'ERR_CONNECTION';
}

export class BadResponseError extends RelayAPIError {
  static readonly code: 'ERR_BAD_RESPONSE';
  readonly code: 'ERR_BAD_RESPONSE';
  /** HTTP status of the answer (2xx). */
  readonly status: number;
  /** The start of what arrived. */
  readonly body: unknown;
}
