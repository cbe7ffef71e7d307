// Chat (plain and streamed), image generation and embeddings through a running relay.
//
// Run from sdk/js with the relay listening at the address in the .rai file:
//   cp .env.example .env        # then put the provider key in OPENAI_API_KEY
//   node examples/chat.js "Say hello in one short sentence."
// Environment (or .env): OPENAI_API_KEY (required), RELAYAPI_RAI (default ../../default.rai),
// RELAYAPI_MODEL, RELAYAPI_EMBEDDING_MODEL, RELAYAPI_IMAGE_MODEL.
import { fileURLToPath } from 'node:url';

import { config as loadEnv } from 'dotenv';
import { APIError, RelayAPIClient, RelayAPIError } from 'relayapi-tokens';

loadEnv({ path: fileURLToPath(new URL('../.env', import.meta.url)), quiet: true });

async function main() {
  const apiKey = process.env.OPENAI_API_KEY;
  if (!apiKey) {
    console.error('set OPENAI_API_KEY (in the environment or sdk/js/.env) to the key the relay should use');
    return 2;
  }
  const model = process.env.RELAYAPI_MODEL || 'gpt-4o-mini';
  const prompt = process.argv.slice(2).join(' ') || 'Say hello in one short sentence.';
  const messages = [{ role: 'user', content: prompt }];
  const client = new RelayAPIClient(process.env.RELAYAPI_RAI || '../../default.rai');

  const health = await client.healthCheck();
  console.log(`relay ${client.origin}: ${health.status} (version ${health.version})`);

  // What a frontend gets: a base URL for the official SDK, e.g.
  //   new OpenAI({ baseURL, apiKey: 'unused', dangerouslyAllowBrowser: true })
  // It carries a token that allows 10 calls in the next 5 minutes and never shows the key.
  const baseURL = client.generateUrl({ apiKey, maxCalls: 10, expireSeconds: 300 });
  console.log(`base URL for a frontend: ${baseURL.slice(0, 60)}...`);

  // What a backend script can do itself with the helpers: one token, limited to these endpoints.
  const token = client.createToken({
    apiKey,
    maxCalls: 4,
    expireSeconds: 300,
    allowedEndpoints: ['/chat/completions', '/images/generations', '/embeddings'],
  });

  const reply = await client.chatCompletions(token, { model, messages });
  console.log(`chat: ${reply.choices?.[0]?.message?.content ?? JSON.stringify(reply)}`);

  process.stdout.write('chat (streamed): ');
  for await (const chunk of await client.chatCompletions(token, { model, messages, stream: true })) {
    process.stdout.write(chunk.choices?.[0]?.delta?.content ?? '');
  }
  process.stdout.write('\n');

  const image = await client.imagesGenerations(token, {
    prompt: 'A small paper boat on a calm lake, watercolour',
    model: process.env.RELAYAPI_IMAGE_MODEL || 'dall-e-2',
    size: '256x256',
    n: 1,
  });
  console.log(`image: ${image.data?.[0]?.url ?? `${String(image.data?.[0]?.b64_json).slice(0, 40)}...`}`);

  const embedding = await client.embeddings(token, {
    model: process.env.RELAYAPI_EMBEDDING_MODEL || 'text-embedding-3-small',
    input: prompt,
  });
  console.log(`embedding: ${embedding.data?.[0]?.embedding?.length ?? 0} dimensions`);

  const usage = await client.getUsage(token);
  console.log(`usage: ${usage.calls_used} calls used, ${usage.remaining} remaining`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    if (err instanceof APIError) {
      console.error(`relay answered ${err.status} ${err.errorCode ?? ''}: ${err.message}`);
    } else if (err instanceof RelayAPIError) {
      console.error(`${err.code}: ${err.message}`);
    } else {
      console.error(err);
    }
    process.exitCode = 1;
  },
);
