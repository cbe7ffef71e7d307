// The example end to end in a real browser: Debian's Chromium (headless, driven by playwright-core)
// opens the chat page from the example's backend on one port and streams a reply through the real
// relay binary on another port, from a stand-in OpenAI API that sends each piece only when the test
// says so. Proves the cross-origin preflight passes, the reply reaches the DOM piece by piece, the key
// reaches the upstream only as the relay's Authorization header, and the token shows up in no log.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { RelayAPIClient } from 'relayapi-tokens';

import { createChatServer } from '../server.js';
import { launchChromium, startMockUpstream, startRelay } from './harness.js';

/** The provider key the backend puts in tokens; fake on purpose, only the mock upstream ever sees it. */
const FAKE_KEY = 'test-web-chat-key-5150';
const MODEL = 'gpt-4o-mini';
const PIECES = ['Hello', ' from', ' the', ' relay', '!'];
const SCREENSHOT = process.env.WEB_CHAT_SCREENSHOT || join(tmpdir(), 'relayapi-web-chat.png');

describe('web chat page in headless Chromium', { timeout: 120000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'relayapi-web-chat-'));
  /** @type {Awaited<ReturnType<typeof startMockUpstream>>} */
  let upstream;
  /** @type {Awaited<ReturnType<typeof startRelay>>} */
  let relay;
  /** @type {RelayAPIClient} */
  let client;
  /** @type {import('node:http').Server} */
  let backend;
  /** @type {string} */
  let pageOrigin;
  /** @type {string[]} */
  const backendLog = [];
  /** @type {import('playwright-core').BrowserContext} */
  let browser;
  /** @type {string[]} */
  const tokens = [];

  /**
   * Records the token of every relay URL the page gets from its backend, here and in `tokens`.
   *
   * @param {import('playwright-core').Page} page
   * @returns {string[]}
   */
  function trackTokens(page) {
    /** @type {string[]} */
    const mine = [];
    page.on('response', async (res) => {
      if (new URL(res.url()).pathname === '/api/session' && res.ok()) {
        const token = new URL((await res.json()).baseURL).pathname.split('/')[2];
        mine.push(token);
        tokens.push(token);
      }
    });
    return mine;
  }

  before(async () => {
    upstream = await startMockUpstream(PIECES);
    relay = await startRelay({ dir, mockPort: upstream.port });
    client = new RelayAPIClient(relay.rai);
    backend = createChatServer({ client, apiKey: FAKE_KEY, model: MODEL, log: (l) => backendLog.push(l) });
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    pageOrigin = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (backend.address()).port}`;
    browser = await launchChromium(join(dir, 'profile'));
  });

  after(async () => {
    await browser?.close();
    backend?.closeAllConnections();
    backend?.close();
    await relay?.stop();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('streams a reply into the DOM through the relay, piece by piece', async (t) => {
    assert.notEqual(new URL(pageOrigin).port, String(relay.port), 'page and relay must be different origins');
    const page = await browser.newPage();
    /** @type {string[]} */
    const problems = [];
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${msg.type()}: ${msg.text()}`);
    });
    const minted = trackTokens(page);
    // The DevTools protocol reports the CORS preflight as its own request, which page events do not.
    const cdp = await browser.newCDPSession(page);
    /** @type {Map<string, { method: string, url: string, type: string, status?: number, headers?: Record<string, string> }>} */
    const network = new Map();
    cdp.on('Network.requestWillBeSent', (e) =>
      network.set(e.requestId, { method: e.request.method, url: e.request.url, type: e.type ?? '' }),
    );
    cdp.on('Network.responseReceived', (e) => {
      const entry = network.get(e.requestId);
      if (entry) Object.assign(entry, { status: e.response.status, headers: e.response.headers });
    });
    await cdp.send('Network.enable');

    await page.goto(`${pageOrigin}/`);
    await page.waitForSelector('body[data-ready="true"]');
    // Every text the reply bubble shows, recorded by the page itself at each DOM mutation.
    await page.evaluate(() => {
      const states = [];
      Object.assign(window, { replyStates: states });
      new MutationObserver(() => {
        const text = document.querySelector('.message.assistant:last-child')?.textContent ?? '';
        if (text !== '' && states.at(-1) !== text) states.push(text);
      }).observe(document.getElementById('messages'), {
        childList: true,
        subtree: true,
        characterData: true,
      });
    });

    await page.fill('#prompt', 'Say hello, please.');
    await page.press('#prompt', 'Enter');

    // The mock has sent one piece and waits: the page must show exactly the text so far, still
    // streaming, before the test lets the next piece go.
    const reply = page.locator('.message.assistant').last();
    let expected = '';
    const shown = [];
    for (const piece of PIECES) {
      expected += piece;
      await page.waitForFunction(
        (text) => document.querySelector('.message.assistant:last-child')?.textContent === text,
        expected,
        { timeout: 15000 },
      );
      assert.equal(await reply.getAttribute('data-state'), 'streaming', `"${expected}" shown mid-stream`);
      shown.push(expected);
      upstream.cue();
    }
    await page.waitForSelector('.message.assistant:last-child[data-state="done"]', { timeout: 15000 });
    assert.equal(await reply.textContent(), PIECES.join(''));
    assert.ok(shown.length - 1 >= 2, 'at least two intermediate DOM states before the final one');
    assert.deepEqual(
      await page.evaluate(() => /** @type {any} */ (window).replyStates),
      PIECES.map((_, i) => PIECES.slice(0, i + 1).join('')),
      'the bubble grew one piece at a time, never skipping or repeating a state',
    );
    assert.equal(await page.locator('.message.user').textContent(), 'Say hello, please.');

    await page.screenshot({ path: SCREENSHOT });
    t.diagnostic(`screenshot: ${SCREENSHOT}`);

    // The browser's view: a preflight to the relay answered 2xx with CORS headers, then the POST.
    const relayOrigin = `http://127.0.0.1:${relay.port}`;
    const toRelay = [...network.values()].filter((r) => r.url.startsWith(`${relayOrigin}/`));
    const preflight = toRelay.find((r) => r.method === 'OPTIONS');
    assert.ok(preflight, `no preflight seen; requests to the relay: ${JSON.stringify(toRelay)}`);
    assert.ok(preflight.status && preflight.status >= 200 && preflight.status < 300, `${preflight.status}`);
    assert.equal(lowerKeys(preflight.headers)['access-control-allow-origin'], pageOrigin);
    const post = toRelay.find((r) => r.method === 'POST');
    assert.equal(post?.status, 200);
    assert.equal(lowerKeys(post?.headers)['access-control-allow-origin'], pageOrigin);

    // The relay's view: the preflight answered without a token, the call counted against this token.
    assert.equal(minted.length, 1, 'the page asked its backend for exactly one relay URL');
    const { jti } = client.decodeToken(minted[0]);
    const access = await relay.accessLogFrom(0, (e) => e.method === 'POST', 1);
    const options = access.filter((e) => e.method === 'OPTIONS');
    assert.equal(options.length, 1, JSON.stringify(access));
    assert.ok(options[0].status >= 200 && options[0].status < 300);
    const calls = access.filter((e) => e.method === 'POST');
    assert.deepEqual(
      calls.map((e) => [e.status, e.jti]),
      [[200, jti]],
    );

    // The upstream's view: one streamed call carrying the real key, the preflight never forwarded.
    assert.deepEqual(
      upstream.seen.map((r) => `${r.method} ${r.url}`),
      ['POST /v1/chat/completions'],
    );
    const [call] = upstream.seen;
    assert.equal(call.headers.authorization, `Bearer ${FAKE_KEY}`);
    assert.equal(JSON.parse(call.body).model, MODEL);
    assert.deepEqual(JSON.parse(call.body).messages, [{ role: 'user', content: 'Say hello, please.' }]);

    assert.deepEqual(problems, [], 'no script error, CSP violation or failed load in the page');
    assert.ok(
      !(await page.locator('body').innerText()).includes(minted[0]),
      'the page never shows the token',
    );
    await page.close();
  });

  it('a relay URL presented from another origin is refused by the relay', async () => {
    assert.equal(tokens.length, 1, 'runs after the streaming test, which minted one token');
    const seenBefore = upstream.seen.length;
    const logBefore = relay.accessLog().length;
    // The same backend under another name is another origin: the page at localhost is not the page the
    // token was minted for (127.0.0.1), as a stolen URL pasted into someone else's site would not be.
    const page = await browser.newPage();
    const { port } = /** @type {import('node:net').AddressInfo} */ (backend.address());
    await page.goto(`http://localhost:${port}/`);
    const url = client.urlForToken(tokens[0], 'chat_completions');
    const outcome = await page.evaluate(async (target) => {
      try {
        const res = await fetch(target, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer unused' },
          body: JSON.stringify({
            model: 'gpt-4o-mini',
            stream: true,
            messages: [{ role: 'user', content: 'hi' }],
          }),
        });
        return { status: res.status, code: (await res.json()).error?.code };
      } catch (err) {
        return { error: String(err) };
      }
    }, url);
    // The refusal carries CORS headers, so a page (and the openai SDK in it) can read why it failed.
    assert.deepEqual(outcome, { status: 403, code: 'origin_not_allowed' });
    assert.equal(upstream.seen.length, seenBefore, 'nothing reached the upstream');
    const refused = await relay.accessLogFrom(logBefore, (e) => e.method === 'POST', 1);
    assert.deepEqual(
      refused.filter((e) => e.method === 'POST').map((e) => [e.status, e.reason]),
      [[403, 'origin_not_allowed']],
    );
    await page.close();
  });

  it('a used-up relay URL is replaced by a fresh one between two messages', async () => {
    // A backend minting single-call URLs: the second message finds its URL spent (429 token_exhausted),
    // and the page asks for a new one and retries, carrying the whole conversation.
    const stingy = createChatServer({
      client,
      apiKey: FAKE_KEY,
      model: MODEL,
      maxCalls: 1,
      log: (l) => backendLog.push(l),
    });
    stingy.listen(0, '127.0.0.1');
    await once(stingy, 'listening');
    const { port } = /** @type {import('node:net').AddressInfo} */ (stingy.address());
    upstream.gated = false;
    const seenBefore = upstream.seen.length;
    const logBefore = relay.accessLog().length;
    const page = await browser.newPage();
    try {
      const minted = trackTokens(page);
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.waitForSelector('body[data-ready="true"]');
      for (const [i, text] of ['First question', 'Second question'].entries()) {
        await page.fill('#prompt', text);
        await page.press('#prompt', 'Enter');
        await page.waitForSelector(`.message.assistant:nth-of-type(${2 * (i + 1)})[data-state="done"]`, {
          timeout: 15000,
        });
      }
      assert.deepEqual(await page.locator('.message.assistant').allTextContents(), [
        PIECES.join(''),
        PIECES.join(''),
      ]);
      assert.equal(minted.length, 2, 'a second relay URL was fetched');
      const [first, second] = minted.map((t) => client.decodeToken(t).jti);
      const posts = await relay.accessLogFrom(logBefore, (e) => e.method === 'POST', 3);
      assert.deepEqual(
        posts.filter((e) => e.method === 'POST').map((e) => [e.status, e.reason ?? null, e.jti]),
        [
          [200, null, first],
          [429, 'token_exhausted', first],
          [200, null, second],
        ],
      );
      const calls = upstream.seen.slice(seenBefore);
      assert.equal(calls.length, 2, 'the refused call never reached the upstream');
      assert.deepEqual(JSON.parse(calls[1].body).messages, [
        { role: 'user', content: 'First question' },
        { role: 'assistant', content: PIECES.join('') },
        { role: 'user', content: 'Second question' },
      ]);
    } finally {
      upstream.gated = true;
      await page.close();
      stingy.closeAllConnections();
      stingy.close();
    }
  });

  it('neither a token nor the key appears in any log, nor a token upstream', async () => {
    assert.equal(tokens.length, 3, 'runs last, after the tests that minted tokens');
    await browser.close();
    await relay.stop();
    const output = relay.output();
    assert.match(output, /"msg":"listening"/, 'the relay output was captured');
    assert.ok(relay.accessLog().length >= 6, 'the access log was captured');
    assert.ok(backendLog.includes('POST /api/session 200'), backendLog.join('\n'));
    // Each whole token, and its sealed part alone in case something strips the "rt1." prefix.
    const secrets = [FAKE_KEY, ...tokens.flatMap((t) => [t, t.slice('rt1.'.length)])];
    for (const secret of secrets) {
      assert.ok(!output.includes(secret), `relay output contains ${secret.slice(0, 12)}…`);
      assert.ok(!backendLog.join('\n').includes(secret), `backend log contains ${secret.slice(0, 12)}…`);
    }
    assert.ok(upstream.seen.length >= 3);
    for (const r of upstream.seen) {
      assert.equal(r.headers.authorization, `Bearer ${FAKE_KEY}`);
      const everything = `${r.method} ${r.url}\n${JSON.stringify(r.headers)}\n${r.body}`;
      for (const t of tokens)
        assert.ok(!everything.includes(t.slice('rt1.'.length)), 'the upstream saw a token');
    }
  });
});

/**
 * @param {Record<string, string> | undefined} headers
 * @returns {Record<string, string>}
 */
function lowerKeys(headers) {
  return Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
}
