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
  type UserUsage,
} from 'relayapi-tokens';

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
    userId: 'user-42',
    budgetTokens: 200000,
    budgetCost: null,
    userQuotas: [
      { window: 'day', calls: 50, tokens: 200000, cost: 1000000 },
      { window: 'all', cost: 5 },
    ],
    sessionSeconds: 900,
  };
  const token: string = new TokenGenerator({
    version: 1,
    server: { host: '127.0.0.1', port: 8080 },
    crypto: { method: 'aes-256-gcm-hkdf-sha256', key_id: 'k1', key: 'A'.repeat(43), tenant_id: 't' },
  }).createToken(options);
  const baseURL: string = client.generateUrl({ keyRef: 'openai-main' });
  const chatURL: string = client.generateUrl({ keyRef: 'openai-main', endpoint: 'chat_completions' });
  const url: string =
    client.urlForToken(token, 'chat_completions') + client.urlForToken(token, '/v1/messages');
  const queryURL: string = client.queryUrlForToken(token);
  const claims: TokenClaims = client.verifyToken(token, { leeway: 60 });
  const jti: string = client.decodeToken(token).jti;

  const reply = await client.chatCompletions(token, { model: 'gpt-4o-mini', messages: [], temperature: 0 });
  const stream = await client.chatCompletions(token, { model: 'gpt-4o-mini', messages: [], stream: true });
  for await (const chunk of stream) void chunk.choices;
  const use: TokenUsage = await client.getUsage(jti);
  const remaining: number | null = use.remaining;
  const used: number = use.tokens.input + use.tokens.output + use.cost;
  void used;
  const user: UserUsage = await client.getUserUsage('user-42');
  const today: string | null = user.windows.day.period;
  const spent: number = user.windows.month.tokens.input + user.windows.all.cost;
  void [user, today, spent];
  void [baseURL, chatURL, url, queryURL, claims, reply, remaining, client.relayBaseUrl];
  void [await client.healthCheck(), await client.revokeBefore(Math.floor(Date.now() / 1000))];
  void [
    await client.imagesGenerations(token, { prompt: 'p' }),
    await client.embeddings(token, { model: 'm', input: 'x' }),
  ];

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
  client.queryUrlForToken(token, '');
  // @ts-expect-error -- 2.0: generateUrl mints from options; urlForToken wraps an existing token
  client.generateUrl(token);
}

export async function streamFlag(client: RelayAPIClient, token: string, stream: boolean): Promise<void> {
  const result = await client.chatCompletions(token, { model: 'm', messages: [], stream });
  if (Symbol.asyncIterator in result) for await (const chunk of result) void chunk;
}
