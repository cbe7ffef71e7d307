// Interop of the ecc method with the real relay: the release binary loads a relay-side ecc file made here,
// the SDK mints with the matching backend-side file, and the relay must open, verify and forward the
// token, count it for the ECDSA-signed admin calls, and refuse a token signed by a stranger under the same
// signer id. Skipped, saying why, only when no relay binary has been built.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { APIError, RelayAPIClient } from '../src/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BINARY = [
  process.env.RELAYAPI_BIN,
  join(ROOT, 'target/release/relayapi'),
  join(ROOT, 'target/x86_64-unknown-linux-gnu/release/relayapi'),
].find((p) => p && existsSync(p));
const STARTUP_TIMEOUT_MS = 30000;
/** Fake on purpose: it only ever reaches the stand-in upstream. */
const REAL_KEY = 'test-upstream-key-js-ecc-2718';

/** A fresh P-256 key pair: the private scalar and the SEC1 uncompressed public key, base64url. */
function keyPair() {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const pub = Buffer.concat([
    Buffer.from([4]),
    Buffer.from(/** @type {string} */ (jwk.x), 'base64url'),
    Buffer.from(/** @type {string} */ (jwk.y), 'base64url'),
  ]);
  return { d: /** @type {string} */ (jwk.d), pub: pub.toString('base64url') };
}

/** @type {{ url: string, authorization: string | undefined, body: any }[]} */
const upstreamSeen = [];
const upstream = createServer(async (req, res) => {
  let text = '';
  for await (const c of req) text += c;
  upstreamSeen.push({
    url: req.url ?? '',
    authorization: req.headers.authorization,
    body: JSON.parse(text || 'null'),
  });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: 'hi from ecc' } }] }));
});

describe(
  'ecc tokens against the release relay binary',
  { skip: BINARY ? false : 'no relay binary: run `cargo build --release`' },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'relayapi-js-ecc-'));
    const relayKey = keyPair();
    const signer = keyPair();
    const server = { scheme: 'http', host: '127.0.0.1', port: 8080, base_path: '/relayapi/' };
    const backend = {
      version: 1,
      server,
      crypto: {
        method: 'ecc-p256',
        tenant_id: 'js-ecc',
        signer_id: 'js-backend-1',
        signing_key: signer.d,
        relay_key_id: 'relay-js-1',
        relay_public_key: relayKey.pub,
      },
    };
    /** @type {import('node:child_process').ChildProcess} */
    let relay;
    /** @type {RelayAPIClient} */
    let client;
    /** @type {RelayAPIClient} a backend with a stranger's key under the trusted signer id */
    let stranger;

    before(async () => {
      upstream.listen(0, '127.0.0.1');
      await once(upstream, 'listening');
      const mockPort = /** @type {import('node:net').AddressInfo} */ (upstream.address()).port;
      const relaySide = {
        version: 1,
        server,
        crypto: {
          method: 'ecc-p256',
          tenant_id: 'js-ecc',
          relay_key_id: 'relay-js-1',
          relay_private_key: relayKey.d,
          signers: [{ signer_id: 'js-backend-1', public_key: signer.pub }],
        },
      };
      writeFileSync(join(dir, 'relay.rai'), JSON.stringify(relaySide, null, 2), { mode: 0o600 });
      const config = JSON.parse(readFileSync(join(ROOT, 'config.json'), 'utf8'));
      config.server = { ...config.server, host: '127.0.0.1', port: 0 };
      config.rate_limit.requests_per_second = 0;
      config.rate_limit.ip_limit = { ...config.rate_limit.ip_limit, requests_per_second: 0 };
      config.providers = { openai: { base_url: `http://127.0.0.1:${mockPort}/v1` } };
      config.store = { type: 'memory' };
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));

      relay = spawn(
        /** @type {string} */ (BINARY),
        ['--config', join(dir, 'config.json'), '--rai', join(dir, 'relay.rai')],
        { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH } },
      );
      /** @type {string[]} */
      const log = [];
      const addr = await new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`relay did not start:\n${log.join('\n')}`)),
          STARTUP_TIMEOUT_MS,
        );
        relay.on('exit', (code) => reject(new Error(`relay exited with ${code}:\n${log.join('\n')}`)));
        // Keep draining stderr for the relay's whole life: a full pipe would block its logging.
        createInterface({ input: /** @type {import('node:stream').Readable} */ (relay.stderr) }).on(
          'line',
          (line) => {
            log.push(line);
            try {
              const entry = JSON.parse(line);
              if (entry.msg === 'listening' && entry.addr) {
                clearTimeout(timer);
                resolve(entry.addr);
              }
            } catch {
              // not a JSON line
            }
          },
        );
      });
      const port = Number(String(addr).split(':').pop());
      client = new RelayAPIClient({ ...backend, server: { ...server, port } }, { timeout: 10 });
      const other = keyPair();
      stranger = new RelayAPIClient(
        { ...backend, server: { ...server, port }, crypto: { ...backend.crypto, signing_key: other.d } },
        { timeout: 10 },
      );
    });

    after(async () => {
      if (relay && relay.exitCode === null) {
        relay.kill('SIGTERM');
        await once(relay, 'exit');
      }
      upstream.closeAllConnections();
      upstream.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const messages = [{ role: 'user', content: 'Hello' }];

    it('a JS-minted ecc token is accepted and the upstream gets the real key, never the token', async () => {
      const token = client.createToken({ apiKey: REAL_KEY, maxCalls: 5 });
      const reply = /** @type {any} */ (
        await client.chatCompletions(token, { model: 'gpt-4o-mini', messages })
      );
      assert.equal(reply.choices[0].message.content, 'hi from ecc');
      const last = upstreamSeen[upstreamSeen.length - 1];
      assert.equal(last.url, '/v1/chat/completions');
      assert.equal(last.authorization, `Bearer ${REAL_KEY}`);
      assert.deepEqual(last.body, { model: 'gpt-4o-mini', messages });
    });

    it('a token signed with another key under the same signer id gets the generic 401', async () => {
      const before = upstreamSeen.length;
      const token = stranger.createToken({ apiKey: REAL_KEY });
      await assert.rejects(
        stranger.chatCompletions(token, { model: 'gpt-4o-mini', messages }),
        (err) => err instanceof APIError && err.status === 401 && err.errorCode === 'invalid_token',
      );
      assert.equal(upstreamSeen.length, before, 'nothing reached the upstream');
    });

    it('ECDSA-signed admin calls: usage by token id, revoke, and the revoked token refused', async () => {
      const { token, claims } = client.createTokenWithClaims({ apiKey: REAL_KEY, maxCalls: 3 });
      const jti = /** @type {string} */ (claims.jti);
      await client.chatCompletions(token, { model: 'gpt-4o-mini', messages });
      const usage = /** @type {any} */ (await client.getUsage(jti));
      assert.deepEqual(
        [usage.token_id, usage.tenant_id, usage.calls_used, usage.max_calls],
        [jti, 'js-ecc', 1, 3],
      );
      assert.equal(/** @type {any} */ (await client.revoke(jti)).revoked, true);
      await assert.rejects(
        client.chatCompletions(token, { model: 'gpt-4o-mini', messages }),
        (err) => err instanceof APIError && err.status === 401 && err.errorCode === 'token_revoked',
      );
      // The stranger's admin signature does not verify under the trusted signer's public key.
      await assert.rejects(
        stranger.getUsage(jti),
        (err) => err instanceof APIError && err.status === 401 && err.errorCode === 'invalid_admin_signature',
      );
    });
  },
);
