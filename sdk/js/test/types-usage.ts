// Compile-only: `npm run lint` type-checks this file against types/index.d.ts through the package's own
// `exports` map, so a declaration that stops matching the documented usage fails the build. Not run.
import {
  APIError,
  InvalidTokenError,
  RelayAPIClient,
  TokenGenerator,
  type CreateTokenOptions,
  type TokenClaims,
  type TokenUsage,
} from 'relayapi-sdk';

export async function usage(): Promise<void> {
  const client = new RelayAPIClient('./default.rai', { timeout: 30 });
  const options: CreateTokenOptions = {
    apiKey: 'test-key-123',
    maxCalls: null,
    expireSeconds: 600,
    provider: 'openai',
    extInfo: { rep_m: 'gpt-4o-mini' },
    rateLimit: [10, 60],
    allowedEndpoints: ['/chat/completions'],
    maxTokens: 512,
    maxTokensMode: 'clamp',
  };
  const token: string = new TokenGenerator({
    version: 1,
    server: { host: '127.0.0.1', port: 8080 },
    crypto: { method: 'aes-256-gcm-hkdf-sha256', key_id: 'k1', key: 'A'.repeat(43), tenant_id: 't' },
  }).createToken(options);
  const baseURL: string = client.generateBaseUrl({ keyRef: 'openai-main' });
  const url: string =
    client.generateUrl(token, 'chat_completions') + client.generateUrl(token, '/v1/messages');
  const claims: TokenClaims = client.verifyToken(token, { leeway: 60 });
  const jti: string = client.decodeToken(token).jti;

  const reply = await client.chat({ token, model: 'gpt-4o-mini', messages: [], temperature: 0 });
  const stream = await client.chat({ token, model: 'gpt-4o-mini', messages: [], stream: true });
  for await (const chunk of stream) void chunk.choices;
  const use: TokenUsage = await client.getUsage(jti);
  const remaining: number | null = use.remaining;
  void [baseURL, url, claims, reply, remaining, client.relayBaseUrl, await client.healthCheck()];

  try {
    await client.revoke(token);
  } catch (err) {
    if (err instanceof APIError && err.errorCode === 'token_revoked' && !err.shouldRetry) return;
    if (err instanceof InvalidTokenError && err.code === 'ERR_TOKEN_EXPIRED') return;
    throw err;
  }

  // @ts-expect-error -- rateLimit is a [calls, seconds] pair
  client.createToken({ apiKey: 'k', rateLimit: { n: 1, s: 1 } });
  // @ts-expect-error -- the query form has no base URL
  client.generateQueryUrl(token, '');
}

export async function streamFlag(client: RelayAPIClient, token: string, stream: boolean): Promise<void> {
  const result = await client.chat({ token, model: 'm', messages: [], stream });
  if (Symbol.asyncIterator in result) for await (const chunk of result) void chunk;
}
