// The shared ecc vectors (docs/token-format.md §10.5, tests/vectors/ecc.json) through the JS minter, after
// checking ecc.json and hpke-rfc9180.json against schema.json. Node cannot sign with RFC 6979, so each
// generate case injects the vector's signature and must then match byte for byte; the SDK's own random-nonce
// signature is checked separately by opening its token. The invalid cases are for verifiers: the SDK never
// verifies an ecc token, so they are not run here.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import Ajv2020 from 'ajv/dist/2020.js';

import { loadConfig } from '../src/config.js';
import { mintEccFromParts } from '../src/ecc-token.js';
import { ConfigError } from '../src/errors.js';
import { mintWithParts } from '../src/generator.js';
import { openEccToken } from './ecc-open.js';
import { readVector } from './helpers.js';

const schema = readVector('schema.json');
const ecc = readVector('ecc.json');
const hex = (/** @type {string} */ s) => Buffer.from(s, 'hex');
const b64 = (/** @type {string} */ s) => Buffer.from(s, 'base64url');
/** @type {Map<string, { key_id: string, tenant: string, private_key: string, public_key: string }>} */
const RELAY_KEYS = new Map(ecc.keys.relay_keys.map((/** @type {any} */ k) => [k.key_id, k]));
/** @type {Map<string, { signer_id: string, tenant: string, signing_key: string, public_key: string }>} */
const SIGNERS = new Map(ecc.keys.signers.map((/** @type {any} */ k) => [k.signer_id, k]));

/** The backend-side file a signer's backend would hold for one relay key. */
function backendConfig(/** @type {string} */ rkid, /** @type {string} */ skid) {
  const signer = /** @type {any} */ (SIGNERS.get(skid));
  return loadConfig({
    version: 1,
    server: { scheme: 'https', host: 'relay.example.com', port: 443 },
    crypto: {
      method: 'ecc-p256',
      tenant_id: signer.tenant,
      signer_id: skid,
      signing_key: signer.signing_key,
      relay_key_id: rkid,
      relay_public_key: /** @type {any} */ (RELAY_KEYS.get(rkid)).public_key,
    },
  });
}

describe('ecc.json and hpke-rfc9180.json match schema.json', () => {
  const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
  ajv.addSchema(schema);
  for (const [name, data] of [
    ['ecc', ecc],
    ['hpke', readVector('hpke-rfc9180.json')],
  ]) {
    it(name, () => {
      const validate = ajv.getSchema(`${schema.$id}#/$defs/${name}`);
      assert.ok(validate, `schema has no $defs/${name}`);
      assert.ok(validate(data), ajv.errorsText(validate.errors));
    });
  }
});

describe('ecc.json generate: byte-identical minting with the vector signature injected', () => {
  for (const g of ecc.generate) {
    it(g.desc, () => {
      const config = backendConfig(g.rkid, g.skid);
      const ecck = /** @type {import('../src/ecc-config.js').EccBackendKeys} */ (config.ecc);
      const parts = {
        claims: g.claims,
        rkid: g.rkid,
        skid: g.skid,
        relayPublicKey: ecck.relayPublicKey,
        signingKey: ecck.signingKey,
        ikmE: hex(g.ikm_e),
        sig: hex(g.sig),
      };
      const minted = mintEccFromParts(parts);
      assert.equal(minted.claimsJson, g.claims_json);
      assert.equal(minted.header.toString('hex'), g.header);
      assert.equal(minted.token, g.token);
      // The same through the generator's path, which also checks the key window at iat.
      assert.equal(mintWithParts(config, g.claims, { ikmE: hex(g.ikm_e), sig: hex(g.sig) }).token, g.token);
      // The vector's enc is the ephemeral public key DeriveKeyPair(ikm_e) gives.
      const blob = b64(g.token.slice(4));
      assert.equal(blob.subarray(g.header.length / 2, g.header.length / 2 + 65).toString('hex'), g.enc);
    });

    it(`${g.desc}: with the SDK's own signature, the relay key opens it and the signer's key verifies it`, () => {
      const config = backendConfig(g.rkid, g.skid);
      const { token } = mintWithParts(config, g.claims, { ikmE: hex(g.ikm_e) });
      const relay = /** @type {any} */ (RELAY_KEYS.get(g.rkid));
      const opened = openEccToken(token, b64(relay.private_key), b64(SIGNERS.get(g.skid)?.public_key ?? ''));
      assert.equal(opened.claimsJson, g.claims_json);
      assert.equal(opened.enc.toString('hex'), g.enc);
      // Same header, claims and ephemeral key; only the (random-nonce) signature differs from the vector.
      assert.notEqual(opened.sig.toString('hex'), g.sig);
    });
  }
});

describe('ecc.json verify: the test-only opener agrees with the vectors on authentic tokens', () => {
  // The SDK does not verify ecc tokens; this pins test/ecc-open.js, which the round-trip tests rely on.
  for (const v of ecc.verify.filter((/** @type {any} */ v) => v.result === 'ok')) {
    it(v.desc, () => {
      const blob = b64(v.token.slice(4));
      const rkid = blob.subarray(3, 3 + blob[2]).toString('latin1');
      const skid = blob.subarray(4 + blob[2], 4 + blob[2] + blob[3 + blob[2]]).toString('latin1');
      const relay = /** @type {any} */ (RELAY_KEYS.get(rkid));
      const signer = /** @type {any} */ (SIGNERS.get(skid));
      const opened = openEccToken(v.token, b64(relay.private_key), b64(signer.public_key));
      assert.deepEqual(opened.claims, v.claims);
    });
  }
});

describe('ecc.json rai: what an SDK loads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relayapi-ecc-rai-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  // The relay's refusals are the relay's business (some are backend-side files, which an SDK loads);
  // a relay-side file the relay loads is one every SDK must refuse, saying which file to use.
  const cases = ecc.rai.filter((/** @type {any} */ c) => c.loader === 'sdk' || c.verdict === 'load');
  cases.forEach((/** @type {any} */ c, /** @type {number} */ i) => {
    it(`${c.loader} ${c.rule} ${c.desc}: ${c.loader === 'sdk' ? c.verdict : 'refused by the SDK'}`, () => {
      const path = join(dir, `case-${i}.rai`);
      writeFileSync(path, c.rai, 'utf8');
      if (c.loader === 'sdk' && c.verdict === 'load') {
        assert.equal(loadConfig(path).method, 'ecc-p256');
      } else if (c.loader === 'relay' && c.verdict === 'load') {
        // A good relay-side file: the SDK refuses it, saying which file to give it instead (E1).
        assert.throws(
          () => loadConfig(path),
          (err) =>
            err instanceof ConfigError &&
            err.field === 'crypto.relay_private_key' &&
            err.message.includes(path) &&
            err.message.includes('backend-side'),
        );
      } else {
        assert.throws(() => loadConfig(path), ConfigError);
      }
    });
  });

  it('covers every rule E1-E7 for the SDK loader, both verdicts', () => {
    const sdk = ecc.rai.filter((/** @type {any} */ c) => c.loader === 'sdk');
    assert.deepEqual(new Set(sdk.map((/** @type {any} */ c) => c.verdict)), new Set(['load', 'refuse']));
    for (const rule of ['E1', 'E2', 'E3', 'E4', 'E6', 'E7']) {
      assert.ok(
        sdk.some((/** @type {any} */ c) => c.rule === rule),
        rule,
      );
    }
  });
});
