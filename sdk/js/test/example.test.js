// examples/chat.js end to end against a stand-in relay on 127.0.0.1 that opens every token it receives
// and checks the provider key inside, so the example is known to run as its README says.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { openToken } from '../src/token.js';
import { raiObject, vectorKeyring } from './helpers.js';

const ring = vectorKeyring();
const dir = mkdtempSync(join(tmpdir(), 'relayapi-example-'));
/** @type {string[]} */
const seen = [];
let usedCalls = 0;

const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : null;
  const send = (/** @type {unknown} */ doc) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(doc));
  };
  seen.push(`${req.method} ${req.url}`);
  if (req.url === '/health') return send({ status: 'ok', version: '0.1.0', uptime_secs: 1, requests: {} });
  if (req.url?.startsWith('/admin/v1/tokens/')) {
    return send({ token_id: req.url.split('/')[4], calls_used: usedCalls, remaining: 4 - usedCalls });
  }
  const token = String(req.headers.authorization).replace(/^Bearer /, '');
  const { claims } = openToken(token, ring);
  assert.equal(claims.key, 'test-key-123', 'the provider key travels inside the token');
  usedCalls += 1;
  if (req.url === '/relayapi/chat/completions' && body.stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const piece of ['Hello', ' from', ' the stream']) {
      res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: piece } }] })}\n\n`);
    }
    return res.end('data: [DONE]\n\n');
  }
  if (req.url === '/relayapi/chat/completions')
    return send({ choices: [{ message: { content: `echo: ${body.messages[0].content}` } }] });
  if (req.url === '/relayapi/images/generations')
    return send({ data: [{ url: 'https://images.example/boat.png' }] });
  if (req.url === '/relayapi/embeddings') return send({ data: [{ embedding: [0.1, 0.2, 0.3] }] });
  res.writeHead(404).end();
});

before(async () => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
  writeFileSync(join(dir, 'test.rai'), JSON.stringify(raiObject({ server: { port } })));
});
after(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

it('examples/chat.js runs chat, streamed chat, image, embedding and usage through the relay', async () => {
  const script = fileURLToPath(new URL('../examples/chat.js', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [script, 'ping'], {
    cwd: dir,
    env: { PATH: process.env.PATH, OPENAI_API_KEY: 'test-key-123', RELAYAPI_RAI: join(dir, 'test.rai') },
    timeout: 20000,
  });
  assert.match(stdout, /: ok \(version 0\.1\.0\)/);
  assert.match(stdout, /chat: echo: ping/);
  assert.match(stdout, /chat \(streamed\): Hello from the stream/);
  assert.match(stdout, /image: https:\/\/images\.example\/boat\.png/);
  assert.match(stdout, /embedding: 3 dimensions/);
  assert.match(stdout, /usage: 4 calls used, 0 remaining/);
  assert.deepEqual(
    seen.filter((s) => s.startsWith('POST')),
    [
      'POST /relayapi/chat/completions',
      'POST /relayapi/chat/completions',
      'POST /relayapi/images/generations',
      'POST /relayapi/embeddings',
    ],
  );
});

it('examples/chat.js explains a missing provider key', async () => {
  // Set but empty: dotenv never overrides a variable that exists, so a developer's .env cannot interfere.
  const script = fileURLToPath(new URL('../examples/chat.js', import.meta.url));
  await assert.rejects(
    promisify(execFile)(process.execPath, [script], {
      cwd: dir,
      env: { PATH: process.env.PATH },
      timeout: 20000,
    }),
    (err) =>
      /** @type {any} */ (err).code === 2 && /set OPENAI_API_KEY/.test(/** @type {any} */ (err).stderr),
  );
});
