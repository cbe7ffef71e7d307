// A realtime session from a page in headless Chromium through the real relay binary: the official
// `openai` package's browser WebSocket client (`OpenAIRealtimeWebSocket`, `dangerouslyAllowBrowser`)
// with the relay's base URL and the relay token as its API key, as the README says a page sets it up.
// The browser client only speaks wss:, so the relay serves TLS itself (the test certificate). Proves
// events flow both ways, the token travels as the `openai-insecure-api-key.` subprotocol entry and is
// taken out, the stand-in provider sees the real key in `Authorization` and never the token, and the
// session's usage is charged to the token.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { build } from 'esbuild';
import { RelayAPIClient } from 'relayapi-tokens';

import { REALTIME_USAGE, launchChromium, startMockRealtime, startRelay } from './harness.js';

const FAKE_KEY = 'test-web-chat-realtime-key-6021';
const MODEL = 'gpt-realtime';
const PAGE_ENTRY = fileURLToPath(new URL('./realtime-page.js', import.meta.url));

describe('realtime session from a page in headless Chromium', { timeout: 120000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'relayapi-web-realtime-'));
  /** @type {Awaited<ReturnType<typeof startMockRealtime>>} */
  let upstream;
  /** @type {Awaited<ReturnType<typeof startRelay>>} */
  let relay;
  /** @type {import('node:http').Server} */
  let pages;
  /** @type {string} */
  let pageOrigin;
  /** @type {import('playwright-core').BrowserContext} */
  let browser;

  before(async () => {
    upstream = await startMockRealtime();
    relay = await startRelay({ dir, mockPort: upstream.port, tls: true });
    const bundle = join(dir, 'realtime.js');
    await build({
      entryPoints: [PAGE_ENTRY],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      outfile: bundle,
      logLevel: 'error',
    });
    const script = readFileSync(bundle);
    pages = createServer((req, res) => {
      if (req.url === '/realtime.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        return res.end(script);
      }
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(
        '<!doctype html><title>realtime</title><body><script type="module" src="/realtime.js"></script>',
      );
    });
    pages.listen(0, '127.0.0.1');
    await once(pages, 'listening');
    pageOrigin = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (pages.address()).port}`;
    browser = await launchChromium(join(dir, 'profile'), { ignoreHTTPSErrors: true });
  });

  after(async () => {
    await browser?.close();
    pages?.closeAllConnections();
    pages?.close();
    await relay?.stop();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens a session with the relay token as the API key and gets a response back', async () => {
    const client = new RelayAPIClient(relay.rai);
    const token = client.createToken({ apiKey: FAKE_KEY, maxCalls: 2, allowedOrigins: [pageOrigin] });
    const page = await browser.newPage();
    /** @type {string[]} */
    const problems = [];
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    await page.goto(`${pageOrigin}/`);
    await page.waitForSelector('body[data-ready="true"]', { state: 'attached' });

    const result = await page.evaluate((options) => /** @type {any} */ (window).realtimeRoundTrip(options), {
      baseURL: client.relayBaseUrl,
      apiKey: token,
      model: MODEL,
    });
    assert.deepEqual(result.types, [
      'session.created',
      'response.created',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_audio.delta',
      'response.done',
    ]);
    assert.equal(result.text, 'Hello from the mock');
    assert.deepEqual(result.usage, REALTIME_USAGE);
    assert.equal(result.protocol, 'realtime', 'the provider chose `realtime`, passed on by the relay');
    assert.equal(result.closeCode, 1000, 'the page closed and the close handshake came back through');

    // The provider's view: the relay's own handshake, the real key, the token nowhere.
    assert.equal(upstream.seen.length, 1);
    const [seen] = upstream.seen;
    assert.equal(seen.url, `/v1/realtime?model=${MODEL}`);
    assert.equal(seen.headers.authorization, `Bearer ${FAKE_KEY}`);
    assert.equal(seen.headers['sec-websocket-protocol'], 'realtime');
    assert.equal(seen.headers['sec-websocket-extensions'], undefined);
    assert.ok(!JSON.stringify(seen).includes(token), 'the token reached the provider');
    assert.ok(
      !JSON.stringify(seen).includes('openai-insecure-api-key'),
      'the key entry reached the provider',
    );
    assert.deepEqual(
      upstream.received.map((e) => e.type),
      ['response.create'],
    );

    // The relay's view: one session of this token, charged what the provider reported.
    const { jti } = client.decodeToken(token);
    // The access log is written by a thread of its own: wait for the line rather than read once.
    const deadline = Date.now() + 10000;
    let sessions = relay.accessLog().filter((e) => e.jti === jti);
    while (sessions.length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      sessions = relay.accessLog().filter((e) => e.jti === jti);
    }
    assert.equal(sessions.length, 1, relay.output());
    assert.equal(sessions[0].status, 101);
    assert.ok(!relay.output().includes(token), 'the token shows up in no log line');
    assert.deepEqual(problems, []);
    await page.close();
  });
});
