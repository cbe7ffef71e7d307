// Shared fixtures for the test files: the vector files and a `.rai` object built on a vector key.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const VECTORS_DIR = fileURLToPath(new URL('../../../tests/vectors/', import.meta.url));

/** @param {string} name */
export function readVector(name) {
  return JSON.parse(readFileSync(VECTORS_DIR + name, 'utf8'));
}

/** kid → { tenant, key } from keys.json. */
export function vectorKeyring() {
  return new Map(
    readVector('keys.json').map((k) => [k.kid, { tenant: k.tenant, key: Buffer.from(k.key, 'base64url') }]),
  );
}

/** A valid `.rai` object on the vector key k1 (tenant acme), with k2 as a previous key. */
export function raiObject(overrides = {}) {
  const keys = readVector('keys.json');
  const k1 = keys.find((k) => k.kid === 'k1');
  const k2 = keys.find((k) => k.kid === 'k2-2026.rotated');
  const rai = {
    version: 1,
    server: { scheme: 'http', host: '127.0.0.1', port: 8080, base_path: '/relayapi/' },
    crypto: {
      method: 'aes-256-gcm-hkdf-sha256',
      key_id: 'k1',
      key: k1.key,
      tenant_id: 'acme',
      previous_keys: [{ key_id: k2.kid, key: k2.key }],
    },
  };
  return {
    ...rai,
    ...overrides,
    server: { ...rai.server, ...overrides.server },
    crypto: { ...rai.crypto, ...overrides.crypto },
  };
}
