// The ecc method (docs/token-format.md §10) end to end inside the SDK: backend-side .rai files load and
// relay-side ones are refused (client-config.md E1-E7), createToken mints ecc tokens that the test-only
// opener (test/ecc-open.js: its own HPKE, crypto.verify) reads back with the relay's key, fresh
// randomness every time, and the operations a backend-side file cannot do say so.
import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ConfigError, InvalidArgumentError, RelayAPIClient, TokenGenerator } from '../src/index.js';
import { loadConfig } from '../src/config.js';
import { signAdminRequestEcc } from '../src/admin.js';
import { eccTokenLength } from '../src/ecc-token.js';
import { mintWithParts } from '../src/generator.js';
import { claimsFromOptions } from '../src/options.js';
import { N, P, isPoint, isScalar, lowS } from '../src/p256.js';
import { openEccToken } from './ecc-open.js';

/** A fresh P-256 key pair as .rai strings and raw bytes. */
function keyPair() {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const d = Buffer.from(/** @type {string} */ (jwk.d), 'base64url');
  const pub = Buffer.concat([
    Buffer.from([4]),
    Buffer.from(/** @type {string} */ (jwk.x), 'base64url'),
    Buffer.from(/** @type {string} */ (jwk.y), 'base64url'),
  ]);
  return { d, pub, dText: d.toString('base64url'), pubText: pub.toString('base64url') };
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const RELAY = keyPair();
const SIGNER = keyPair();

/** A backend-side ecc .rai object; `crypto` members replace or (with undefined) remove fields. */
function backendRai(/** @type {Record<string, unknown>} */ crypto = {}) {
  /** @type {Record<string, unknown>} */
  const c = {
    method: 'ecc-p256',
    tenant_id: 'acme',
    signer_id: 'acme-backend-1',
    signing_key: SIGNER.dText,
    relay_key_id: 'relay-acme-2026-12',
    relay_public_key: RELAY.pubText,
    ...crypto,
  };
  for (const [k, v] of Object.entries(c)) if (v === undefined) delete c[k];
  return { version: 1, server: { scheme: 'https', host: 'relay.example.com', port: 443 }, crypto: c };
}

const relaySideRai = () => ({
  version: 1,
  server: { scheme: 'https', host: 'relay.example.com', port: 443 },
  crypto: {
    method: 'ecc-p256',
    tenant_id: 'acme',
    relay_key_id: 'relay-acme-2026-12',
    relay_private_key: RELAY.dText,
    signers: [{ signer_id: 'acme-backend-1', public_key: SIGNER.pubText }],
  },
});

/** @param {() => unknown} fn @param {string} field */
function refusedAt(fn, field) {
  assert.throws(fn, (err) => err instanceof ConfigError && err.field === field);
}

describe('ecc .rai files (docs/client-config.md E1-E7)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relayapi-ecc-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a backend-side file loads, minting as the signer', () => {
    const c = loadConfig(backendRai({ not_before: 10, not_after: 20 }));
    assert.equal(c.method, 'ecc-p256');
    assert.equal(c.keyId, 'acme-backend-1');
    assert.equal(c.key, null);
    assert.deepEqual([c.tenantId, c.notBefore, c.notAfter], ['acme', 10, 20]);
    assert.equal(c.ecc?.relayKeyId, 'relay-acme-2026-12');
    assert.deepEqual(c.ecc?.relayPublicKey, RELAY.pub);
  });

  it('E1: the relay-side file is refused, naming the file and the file to use instead', () => {
    const path = join(dir, 'relay.rai');
    writeFileSync(path, JSON.stringify(relaySideRai()));
    assert.throws(
      () => new TokenGenerator(path),
      (err) =>
        err instanceof ConfigError &&
        err.field === 'crypto.relay_private_key' &&
        err.message.includes(path) &&
        err.message.includes('backend-side file') &&
        !err.message.includes(RELAY.dText),
    );
    refusedAt(() => loadConfig(relaySideRai()), 'crypto.relay_private_key');
  });

  it('E1: both sides in one file, neither side, unknown fields and null are refused', () => {
    refusedAt(() => loadConfig(backendRai({ relay_private_key: RELAY.dText })), 'crypto.relay_private_key');
    refusedAt(() => loadConfig(backendRai({ signing_key: undefined })), 'crypto.signing_key');
    refusedAt(() => loadConfig(backendRai({ signers: [] })), 'crypto.signers');
    refusedAt(() => loadConfig(backendRai({ key_id: 'k1' })), 'crypto.key_id');
    refusedAt(() => loadConfig(backendRai({ not_after: null })), 'crypto.not_after');
    refusedAt(() => loadConfig(backendRai({ relay_public_key: undefined })), 'crypto.relay_public_key');
  });

  it('E2: ids are identifiers of 1 to 32 bytes, distinct within the file', () => {
    refusedAt(() => loadConfig(backendRai({ signer_id: '' })), 'crypto.signer_id');
    refusedAt(() => loadConfig(backendRai({ signer_id: 'a'.repeat(33) })), 'crypto.signer_id');
    refusedAt(() => loadConfig(backendRai({ relay_key_id: 'has space' })), 'crypto.relay_key_id');
    refusedAt(() => loadConfig(backendRai({ relay_key_id: 'acme-backend-1' })), 'crypto.relay_key_id');
    assert.equal(loadConfig(backendRai({ signer_id: 'a'.repeat(32) })).keyId, 'a'.repeat(32));
  });

  it('E3: the signing key is a canonical 43-character scalar from 1 to n-1, never echoed', () => {
    const scalar = (/** @type {bigint} */ v) =>
      Buffer.from(v.toString(16).padStart(64, '0'), 'hex').toString('base64url');
    for (const bad of [
      scalar(0n),
      scalar(N),
      scalar(N + 1n),
      `${SIGNER.dText}=`,
      SIGNER.dText.slice(0, 42),
      SIGNER.d.toString('base64'),
      // The final character's two unused bits set: the same bytes, but not the canonical spelling.
      SIGNER.dText.slice(0, 42) + B64[B64.indexOf(SIGNER.dText[42]) | 1],
      42,
    ]) {
      assert.throws(
        () => loadConfig(backendRai({ signing_key: bad })),
        (err) =>
          err instanceof ConfigError &&
          err.field === 'crypto.signing_key' &&
          !err.message.includes(SIGNER.dText),
      );
    }
    assert.equal(loadConfig(backendRai({ signing_key: scalar(N - 1n) })).keyId, 'acme-backend-1');
    assert.equal(loadConfig(backendRai({ signing_key: scalar(1n) })).keyId, 'acme-backend-1');
  });

  it('E4: the relay public key is an uncompressed point on P-256 with coordinates below p', () => {
    const point = (/** @type {Buffer} */ b) => b.toString('base64url');
    const offCurve = Buffer.from(RELAY.pub);
    offCurve[64] ^= 1;
    const compressed = Buffer.concat([Buffer.from([2 + (RELAY.pub[64] & 1)]), RELAY.pub.subarray(1, 33)]);
    const xTooBig = Buffer.from(RELAY.pub);
    Buffer.from(P.toString(16), 'hex').copy(xTooBig, 1);
    const hybrid = Buffer.from(RELAY.pub);
    hybrid[0] = 6 + (RELAY.pub[64] & 1);
    for (const bad of [
      point(offCurve),
      point(compressed),
      point(xTooBig),
      point(hybrid),
      point(Buffer.alloc(65)),
      `${RELAY.pubText}A`,
      RELAY.pubText.slice(0, 86),
    ]) {
      refusedAt(() => loadConfig(backendRai({ relay_public_key: bad })), 'crypto.relay_public_key');
    }
    assert.ok(isPoint(RELAY.pub) && !isPoint(offCurve) && !isPoint(xTooBig));
  });

  it('E6: the window of the signing key is checked like rule 10', () => {
    refusedAt(() => loadConfig(backendRai({ not_before: 20, not_after: 20 })), 'crypto.not_after');
    refusedAt(() => loadConfig(backendRai({ not_before: -1 })), 'crypto.not_before');
    refusedAt(() => loadConfig(backendRai({ not_before: 1.5 })), 'crypto.not_before');
  });

  it('E7: the signing key may not be the relay key', () => {
    refusedAt(() => loadConfig(backendRai({ relay_public_key: SIGNER.pubText })), 'crypto.relay_public_key');
  });

  it('rule 8 and the server rules apply to ecc files too', () => {
    refusedAt(() => loadConfig(backendRai({ tenant_id: 'a b' })), 'crypto.tenant_id');
    refusedAt(() => loadConfig({ ...backendRai(), server: { host: 'x_y', port: 1 } }), 'server.host');
  });
});

describe('minting ecc tokens', () => {
  const gen = new TokenGenerator(backendRai());

  it('createToken seals signed claims to the relay key, with the header bound in', () => {
    const before = Math.floor(Date.now() / 1000);
    const token = gen.createToken({ apiKey: 'sk-test', maxCalls: 5, allowedModels: ['gpt-4o-mini'] });
    const opened = openEccToken(token, RELAY.d, SIGNER.pub);
    assert.deepEqual([opened.rkid, opened.skid], ['relay-acme-2026-12', 'acme-backend-1']);
    assert.equal(
      opened.header.toString('hex'),
      `0102${'12'}${Buffer.from('relay-acme-2026-12').toString('hex')}0e${Buffer.from('acme-backend-1').toString('hex')}`,
    );
    assert.match(opened.claims.jti, /^[0-9a-f]{32}$/);
    assert.equal(opened.claims.tid, 'acme');
    assert.ok(opened.claims.iat >= before && opened.claims.exp === opened.claims.iat + 3600);
    assert.deepEqual(Object.keys(opened.claims), ['jti', 'tid', 'iat', 'exp', 'prv', 'key', 'max', 'models']);
    assert.equal(token.length, eccTokenLength(18, 14, Buffer.byteLength(opened.claimsJson)));
  });

  it('every token draws a fresh jti, ephemeral key and signature nonce', () => {
    const a = openEccToken(gen.createToken({ apiKey: 'k' }), RELAY.d, SIGNER.pub);
    const b = openEccToken(gen.createToken({ apiKey: 'k' }), RELAY.d, SIGNER.pub);
    assert.notEqual(a.claims.jti, b.claims.jti);
    assert.notDeepEqual(a.enc, b.enc);
    assert.notDeepEqual(a.sig.subarray(0, 32), b.sig.subarray(0, 32));
  });

  it('signatures are always low S (checked by the opener over many tokens)', () => {
    // Half of all raw ECDSA signatures are high S; 32 tokens all passing shows the normalisation works.
    for (let i = 0; i < 32; i += 1) openEccToken(gen.createToken({ apiKey: 'k' }), RELAY.d, SIGNER.pub);
    const sOf = (/** @type {bigint} */ s) =>
      Buffer.concat([Buffer.alloc(32, 1), Buffer.from(s.toString(16).padStart(64, '0'), 'hex')]);
    const half = (N - 1n) / 2n;
    assert.deepEqual(lowS(sOf(N - 1n)), sOf(1n));
    assert.deepEqual(lowS(sOf(half + 1n)), sOf(half));
    assert.deepEqual(lowS(sOf(half)), sOf(half));
  });

  it('a token does not open under another relay key, nor verify under another signer', () => {
    const token = gen.createToken({ apiKey: 'k' });
    assert.throws(() => openEccToken(token, keyPair().d, SIGNER.pub));
    assert.throws(() => openEccToken(token, RELAY.d, keyPair().pub), /signature/);
  });

  it('createTokenWithClaims returns the claims the token carries', () => {
    const { token, claims } = gen.createTokenWithClaims({ keyRef: 'openai-main', userId: 'u7' });
    assert.deepEqual(openEccToken(token, RELAY.d, SIGNER.pub).claims, claims);
  });

  it('mintWithParts with an injected signature reproduces a token byte for byte', () => {
    const config = loadConfig(backendRai());
    const claims = claimsFromOptions(
      { apiKey: 'k' },
      { tenant: 'acme', now: 1790000000, jti: 'a'.repeat(32) },
    );
    const ikmE = Buffer.alloc(32, 7);
    const first = mintWithParts(config, claims, { ikmE });
    const { sig } = openEccToken(first.token, RELAY.d, SIGNER.pub);
    assert.equal(mintWithParts(config, claims, { ikmE, sig }).token, first.token);
    assert.throws(() => mintWithParts(config, claims, { ikmE, sig: Buffer.alloc(64) }), RangeError);
  });

  it('the signing key window governs minting (E6)', () => {
    const now = Math.floor(Date.now() / 1000);
    assert.throws(
      () => new TokenGenerator(backendRai({ not_before: now + 3600 })).createToken({ apiKey: 'k' }),
      (err) => err instanceof ConfigError && err.field === 'crypto.not_before',
    );
    assert.throws(
      () => new TokenGenerator(backendRai({ not_after: now - 1 })).createToken({ apiKey: 'k' }),
      (err) => err instanceof ConfigError && err.field === 'crypto.not_after',
    );
  });

  it('claims are checked as for the symmetric method, naming the option', () => {
    assert.throws(
      () => gen.createToken({ apiKey: 'k', maxCalls: 0 }),
      (err) => err instanceof InvalidArgumentError && err.param === 'maxCalls',
    );
    assert.throws(
      () => gen.createToken({ apiKey: 'k'.repeat(1024), allowedModels: Array(64).fill('m'.repeat(40)) }),
      (err) => err instanceof InvalidArgumentError && err.param === 'token',
    );
  });

  it('a backend-side file cannot open tokens: decode, verify and admin calls by token say so', async () => {
    const client = new RelayAPIClient(backendRai(), {
      fetch: async () => assert.fail('no request may be sent'),
    });
    const token = client.createToken({ apiKey: 'k' });
    const refused = (/** @type {unknown} */ err) =>
      err instanceof InvalidArgumentError && err.param === 'token';
    assert.throws(() => client.decodeToken(token), refused);
    assert.throws(() => client.verifyToken(token), refused);
    await assert.rejects(client.getUsage(token), refused);
    await assert.rejects(client.revoke(token), refused);
  });

  it('p256 helpers: scalar range', () => {
    assert.ok(isScalar(RELAY.d));
    assert.ok(!isScalar(Buffer.alloc(32)));
    assert.ok(!isScalar(Buffer.alloc(31, 1)));
  });
});

describe('admin requests of an ecc tenant (docs/admin-api.md "ecc tenants")', () => {
  const signerKey = createPublicKey({
    format: 'jwk',
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: SIGNER.pub.subarray(1, 33).toString('base64url'),
      y: SIGNER.pub.subarray(33).toString('base64url'),
    },
  });

  /** Checks an Authorization header the way the relay does; returns the signature. */
  function checkSigned(
    /** @type {string} */ header,
    /** @type {string} */ method,
    /** @type {string} */ target,
    /** @type {string} */ body,
  ) {
    const m = /^RelayAPI-ECDSA-P256-SHA256 kid=([^,]+),ts=(\d+),sig=([A-Za-z0-9_-]{86})$/.exec(header);
    assert.ok(m, `bad authorization header ${header}`);
    const [, kid, ts, sigText] = m;
    assert.equal(kid, 'acme-backend-1');
    const sig = Buffer.from(sigText, 'base64url');
    assert.ok(BigInt(`0x${sig.subarray(32).toString('hex')}`) <= (N - 1n) / 2n, 'low S');
    const bodyHash = createHash('sha256').update(body).digest('hex');
    const signed = Buffer.from(`${method}\n${target}\n${ts}\n${bodyHash}`);
    assert.ok(
      verify('sha256', signed, { key: signerKey, dsaEncoding: 'ieee-p1363' }, sig),
      'signature verifies',
    );
    return { ts: Number(ts), sig };
  }

  it('signAdminRequestEcc signs METHOD, target, ts and the body hash with the signing key', () => {
    const signingKey = /** @type {any} */ (loadConfig(backendRai()).ecc).signingKey;
    const req = {
      kid: 'acme-backend-1',
      signingKey,
      method: 'POST',
      target: '/admin/v1/revoke-before',
      body: '{"before":1}',
      ts: 1790000000,
    };
    const header = signAdminRequestEcc(req);
    assert.equal(checkSigned(header, req.method, req.target, req.body).ts, 1790000000);
    // A random nonce: the same request signs differently each time, and both verify.
    assert.notEqual(signAdminRequestEcc(req), header);
    assert.throws(() => checkSigned(header, 'POST', '/admin/v1/revoke-before', '{"before":2}'));
  });

  describe('the client sends them to a real HTTP server', () => {
    /** @type {{ method: string, url: string, authorization: string, body: string }[]} */
    const seen = [];
    const server = createServer(async (req, res) => {
      let body = '';
      for await (const c of req) body += c;
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        authorization: String(req.headers.authorization),
        body,
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token_id: 'f'.repeat(32), tenant_id: 'acme', revoked: true }));
    });
    /** @type {RelayAPIClient} */
    let client;
    before(async () => {
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      client = new RelayAPIClient({ ...backendRai(), server: { scheme: 'http', host: '127.0.0.1', port } });
    });
    after(() => server.close());

    it('getUsage, revoke and revokeBefore carry ECDSA signatures by the signer id', async () => {
      const { claims } = client.createTokenWithClaims({ apiKey: 'k' });
      const jti = /** @type {string} */ (claims.jti);
      await client.getUsage(jti);
      await client.revoke(jti);
      await client.revokeBefore(Math.floor(Date.now() / 1000));
      assert.deepEqual(
        seen.map((r) => `${r.method} ${r.url}`),
        [
          `GET /admin/v1/tokens/${jti}`,
          `POST /admin/v1/tokens/${jti}/revoke`,
          'POST /admin/v1/revoke-before',
        ],
      );
      for (const r of seen) {
        const { ts } = checkSigned(r.authorization, r.method, r.url, r.body);
        assert.ok(Math.abs(ts - Date.now() / 1000) <= 5, 'ts is the current UTC second');
      }
    });
  });
});
