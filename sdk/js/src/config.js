/**
 * Loading the `.rai` client config (docs/client-config.md) into a checked, normalised object.
 *
 * A bad config is a programmer error, so it fails loudly at construction time with a {@link ConfigError}
 * that names the field and says what a valid value looks like, never echoing key material. Turning the
 * config into URLs and keyrings is left to the callers.
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';

import { ECC_METHOD, parseEccCrypto } from './ecc-config.js';
import { ConfigError } from './errors.js';
import { JsonSyntaxError, parseStrictJson } from './json.js';
import { identifier, isObject, keyWindow, object, optional, required } from './rai-fields.js';
import { decodeBase64url } from './token.js';

export const KEY_METHOD = 'aes-256-gcm-hkdf-sha256';
export const DEFAULT_BASE_PATH = '/relayapi/';
// One DNS label (docs/client-config.md rule 3); IDNs must be given in their ASCII (xn--) form.
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const MAX_HOST_BYTES = 253;
// RFC 3986 pchar plus "/", without "%" so a base path can never smuggle an encoded separator (rule 5).
const BASE_PATH = /^\/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]+\/)*$/;
const MAX_BASE_PATH_BYTES = 128;
// Rotation keeps one or two old keys; a long list is a mistake, and every key can still mint (rule 9).
const MAX_PREVIOUS_KEYS = 16;
// A `.rai` is a few hundred bytes; a bigger file is a wrong path (a log, a binary), not a config (rule 1).
const MAX_RAI_BYTES = 64 * 1024;
const DEFAULT_PORTS = { http: 80, https: 443 };

/**
 * @typedef {object} RaiConfig
 * @property {'http' | 'https'} scheme
 * @property {string} host host as written in the file, without IPv6 brackets
 * @property {number} port
 * @property {string} basePath starts and ends with `/`
 * @property {string} origin `scheme://host[:port]` with IPv6 in brackets and default ports left out
 * @property {'aes-256-gcm-hkdf-sha256' | 'ecc-p256'} method the token method (`crypto.method`)
 * @property {string} keyId the key id that mints: `crypto.key_id`, or the ecc `crypto.signer_id`
 * @property {Buffer | null} key 32-byte tenant key used for minting and admin signatures (null for ecc)
 * @property {number | null} notBefore Unix second from which the current key mints (null: always)
 * @property {number | null} notAfter Unix second from which the current key no longer mints (null: never)
 * @property {string} tenantId
 * @property {{ keyId: string, key: Buffer, notBefore: number | null, notAfter: number | null }[]} previousKeys
 *   older keys, only used to read tokens (none for ecc)
 * @property {import('./ecc-config.js').EccBackendKeys | null} ecc the backend-side ecc keys (null for
 *   the symmetric method)
 */

/**
 * @param {unknown} v
 * @param {string} field
 */
function tenantKey(v, field) {
  const bytes = typeof v === 'string' && v.length === 43 ? decodeBase64url(v) : null;
  if (bytes === null || bytes.length !== 32) {
    // Deliberately silent about the value: it is a secret.
    throw new ConfigError(field, 'expected 32 bytes as unpadded base64url (43 characters)');
  }
  return bytes;
}

/**
 * @param {unknown} v
 * @returns {{ host: string, urlHost: string }}
 */
function host(v) {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_HOST_BYTES) {
    throw new ConfigError('server.host', 'expected a host name or IP address');
  }
  if (v.includes(':')) {
    // docs/client-config.md rule 3: a bare IPv6 address, no brackets and no zone id.
    if (v.includes('%')) {
      throw new ConfigError('server.host', 'IPv6 zone ids are not usable in relay URLs');
    }
    if (isIPv6(v)) return { host: v, urlHost: `[${v}]` };
    throw new ConfigError('server.host', 'expected a valid IPv6 address (without brackets)');
  }
  const labels = v.split('.');
  let ok = labels.every((l) => LABEL.test(l));
  // A numeric last label is never a DNS name: the whole host must then be a canonical IPv4 address.
  if (ok && /^[0-9]+$/.test(labels[labels.length - 1])) {
    ok = isIPv4(v) && !labels.some((o) => o.length > 1 && o.startsWith('0'));
  }
  if (ok) return { host: v, urlHost: v };
  throw new ConfigError(
    'server.host',
    "expected a host name (labels of ASCII letters, digits and inner '-') or IP address",
  );
}

/**
 * Checks a parsed `.rai` document.
 *
 * @param {unknown} doc
 * @param {string} [source] where the document came from (a file path), for error messages
 * @returns {RaiConfig}
 * @throws {ConfigError}
 */
export function parseRai(doc, source = 'the .rai object') {
  const root = object(doc, '', ['version', 'server', 'crypto']);
  if (required(root, 'version', 'version') !== 1) throw new ConfigError('version', 'expected 1');

  const server = object(required(root, 'server', 'server'), 'server', [
    'scheme',
    'host',
    'port',
    'base_path',
  ]);
  // Only an absent optional field takes its default: `null` is a wrong value, not a missing one.
  const scheme = optional(server, 'scheme', 'http');
  if (scheme !== 'http' && scheme !== 'https') {
    throw new ConfigError('server.scheme', 'expected "http" or "https"');
  }
  const { host: hostName, urlHost } = host(required(server, 'host', 'server.host'));
  const port = required(server, 'port', 'server.port');
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError('server.port', 'expected an integer from 1 to 65535');
  }
  const basePath = optional(server, 'base_path', DEFAULT_BASE_PATH);
  if (
    typeof basePath !== 'string' ||
    basePath.length > MAX_BASE_PATH_BYTES ||
    !BASE_PATH.test(basePath) ||
    basePath.split('/').some((seg) => seg === '.' || seg === '..')
  ) {
    throw new ConfigError(
      'server.base_path',
      'expected a path that starts and ends with "/" and holds only URL path characters, e.g. "/relayapi/"',
    );
  }

  const defaultPort = DEFAULT_PORTS[scheme];
  const origin = `${scheme}://${urlHost}${port === defaultPort ? '' : `:${port}`}`;
  const where = { scheme: /** @type {'http' | 'https'} */ (scheme), host: hostName, port, basePath, origin };

  const rawCrypto = required(root, 'crypto', 'crypto');
  if (isObject(rawCrypto) && /** @type {Record<string, unknown>} */ (rawCrypto).method === ECC_METHOD) {
    const ecc = parseEccCrypto(/** @type {Record<string, unknown>} */ (rawCrypto), source);
    return {
      ...where,
      method: ECC_METHOD,
      keyId: ecc.ecc.signerId,
      key: null,
      notBefore: ecc.notBefore,
      notAfter: ecc.notAfter,
      tenantId: ecc.tenantId,
      previousKeys: [],
      ecc: ecc.ecc,
    };
  }
  const crypto = object(rawCrypto, 'crypto', [
    'method',
    'key_id',
    'key',
    'tenant_id',
    'previous_keys',
    'not_before',
    'not_after',
  ]);
  if (required(crypto, 'method', 'crypto.method') !== KEY_METHOD) {
    throw new ConfigError('crypto.method', `expected "${KEY_METHOD}" or "${ECC_METHOD}"`);
  }
  const keyId = identifier(required(crypto, 'key_id', 'crypto.key_id'), 'crypto.key_id', 32);
  const key = tenantKey(required(crypto, 'key', 'crypto.key'), 'crypto.key');
  const tenantId = identifier(required(crypto, 'tenant_id', 'crypto.tenant_id'), 'crypto.tenant_id', 64);
  const { notBefore, notAfter } = keyWindow(crypto, 'crypto');

  const previous = optional(crypto, 'previous_keys', []);
  if (!Array.isArray(previous) || previous.length > MAX_PREVIOUS_KEYS) {
    throw new ConfigError('crypto.previous_keys', `expected an array of at most ${MAX_PREVIOUS_KEYS} keys`);
  }
  const seen = new Set([keyId]);
  const previousKeys = previous.map((entry, i) => {
    const field = `crypto.previous_keys[${i}]`;
    const e = object(entry, field, ['key_id', 'key', 'not_before', 'not_after']);
    const kid = identifier(required(e, 'key_id', `${field}.key_id`), `${field}.key_id`, 32);
    if (seen.has(kid)) throw new ConfigError(`${field}.key_id`, `key id "${kid}" appears twice`);
    seen.add(kid);
    const k = tenantKey(required(e, 'key', `${field}.key`), `${field}.key`);
    return { keyId: kid, key: k, ...keyWindow(e, field) };
  });

  return {
    ...where,
    method: KEY_METHOD,
    keyId,
    key,
    notBefore,
    notAfter,
    tenantId,
    previousKeys,
    ecc: null,
  };
}

/**
 * Whether a key is in force at `now` (Unix seconds): from `notBefore` included to `notAfter` excluded.
 *
 * @param {{ notBefore: number | null, notAfter: number | null }} key
 * @param {number} now
 * @returns {boolean}
 */
export function keyInForce(key, now) {
  return (key.notBefore === null || now >= key.notBefore) && (key.notAfter === null || now < key.notAfter);
}

// `ignoreBOM` keeps a leading U+FEFF in the text so the strict parser refuses it (rule 1) instead of the
// decoder silently dropping it, as the relay and the Python SDK refuse it.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Loads a `.rai` config from a parsed object or from a file path.
 *
 * The file is read with the same strict JSON parser as token claims, so a duplicated field cannot hide
 * behind the last one.
 *
 * @param {unknown} source a `.rai` object, or a path (string or file URL) to a `.rai` file
 * @returns {RaiConfig}
 * @throws {ConfigError}
 */
export function loadConfig(source) {
  if (typeof source === 'string' || source instanceof URL) {
    let bytes;
    try {
      bytes = readFileSync(source);
    } catch (err) {
      const why = /** @type {NodeJS.ErrnoException} */ (err).code ?? 'unreadable';
      throw new ConfigError('<file>', `${String(source)} cannot be read (${why})`, { cause: err });
    }
    if (bytes.length > MAX_RAI_BYTES) {
      throw new ConfigError('<file>', `${String(source)} is larger than ${MAX_RAI_BYTES} bytes`);
    }
    let doc;
    try {
      doc = parseStrictJson(UTF8.decode(bytes));
    } catch (err) {
      const why = err instanceof JsonSyntaxError ? `not valid JSON (${err.message})` : 'not UTF-8 text';
      throw new ConfigError('<file>', `${String(source)} is ${why}`, { cause: err });
    }
    return parseRai(doc, String(source));
  }
  if (!isObject(source)) {
    throw new ConfigError('<config>', 'expected a .rai object or the path of a .rai file');
  }
  return parseRai(source);
}

/**
 * The keyring for reading tokens: the current key and every previous key, all of the config's tenant.
 *
 * @param {RaiConfig} config
 * @returns {import('./token.js').Keyring}
 */
export function keyringOf(config) {
  // An ecc backend-side file holds no key that opens tokens.
  if (config.key === null) return new Map();
  const ring = new Map([[config.keyId, { tenant: config.tenantId, key: config.key }]]);
  for (const { keyId, key } of config.previousKeys) ring.set(keyId, { tenant: config.tenantId, key });
  return ring;
}
