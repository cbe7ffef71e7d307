// The `.rai` loader (docs/client-config.md): defaults, every field's rule, and errors that name the field.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';

import { keyInForce, keyringOf, loadConfig } from '../src/config.js';
import { raiObject } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'relayapi-tokens-js-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Asserts a ConfigError naming `field`. */
const refuses = (/** @type {unknown} */ source, /** @type {string} */ field) =>
  assert.throws(() => loadConfig(source), { name: 'ConfigError', code: 'ERR_CONFIG', field });

describe('loadConfig', () => {
  it('loads a full .rai object', () => {
    const c = loadConfig(raiObject());
    assert.equal(c.origin, 'http://127.0.0.1:8080');
    assert.equal(c.basePath, '/relayapi/');
    assert.equal(c.keyId, 'k1');
    assert.equal(c.tenantId, 'acme');
    assert.equal(c.key.length, 32);
    assert.deepEqual(
      c.previousKeys.map((k) => k.keyId),
      ['k2-2026.rotated'],
    );
    assert.deepEqual([...keyringOf(c).keys()], ['k1', 'k2-2026.rotated']);
  });

  it('applies the documented defaults for scheme and base_path', () => {
    const rai = raiObject();
    delete rai.server.scheme;
    delete rai.server.base_path;
    delete rai.crypto.previous_keys;
    const c = loadConfig(rai);
    assert.equal(c.scheme, 'http');
    assert.equal(c.basePath, '/relayapi/');
    assert.deepEqual(c.previousKeys, []);
  });

  it('leaves the default port out of the origin and brackets IPv6 hosts', () => {
    const origin = (/** @type {object} */ server) => loadConfig(raiObject({ server })).origin;
    assert.equal(origin({ scheme: 'http', port: 80, host: 'relay.example.com' }), 'http://relay.example.com');
    assert.equal(
      origin({ scheme: 'https', port: 443, host: 'relay.example.com' }),
      'https://relay.example.com',
    );
    assert.equal(
      origin({ scheme: 'https', port: 80, host: 'relay.example.com' }),
      'https://relay.example.com:80',
    );
    assert.equal(origin({ scheme: 'http', port: 443 }), 'http://127.0.0.1:443');
    assert.equal(origin({ host: '::1' }), 'http://[::1]:8080');
    assert.equal(origin({ host: '2001:db8::5' }), 'http://[2001:db8::5]:8080');
    // The file holds the bare address (docs/client-config.md rule 3); brackets are for URLs only.
    assert.throws(() => origin({ host: '[2001:db8::5]' }), { field: 'server.host' });
  });

  it('reads a file by path or file URL', () => {
    const file = join(dir, 'ok.rai');
    writeFileSync(file, JSON.stringify(raiObject(), null, 2));
    assert.equal(loadConfig(file).keyId, 'k1');
    assert.equal(loadConfig(pathToFileURL(file)).keyId, 'k1');
  });

  it('names <file> for unreadable, non-UTF-8, non-JSON and duplicate-field files', () => {
    refuses(join(dir, 'missing.rai'), '<file>');
    const cases = {
      'latin1.rai': Buffer.from([0x7b, 0xe9, 0x7d]),
      'broken.rai': '{"version": 1,',
      'dup.rai': JSON.stringify(raiObject()).replace('"version":1', '"version":1,"version":1'),
    };
    for (const [name, body] of Object.entries(cases)) {
      writeFileSync(join(dir, name), body);
      refuses(join(dir, name), '<file>');
    }
  });

  it('names <config> for a source that is neither a path nor an object', () => {
    for (const v of [undefined, null, 42, ['x'], new Map()]) refuses(v, '<config>');
  });

  it('refuses each invalid field, naming it', () => {
    const cases = [
      [{ version: 2 }, 'version'],
      [{ version: '1' }, 'version'],
      [{ extra: 1 }, 'extra'],
      [{ server: { scheme: 'ftp' } }, 'server.scheme'],
      [{ server: { scheme: null } }, 'server.scheme'],
      [{ server: { base_path: null } }, 'server.base_path'],
      [{ crypto: { previous_keys: null } }, 'crypto.previous_keys'],
      [{ server: { host: '' } }, 'server.host'],
      [{ server: { host: 'a b' } }, 'server.host'],
      [{ server: { host: 'http://relay' } }, 'server.host'],
      [{ server: { host: 'fe80::1%eth0' } }, 'server.host'],
      [{ server: { host: '[relay.example.com]' } }, 'server.host'],
      [{ server: { host: '-relay' } }, 'server.host'],
      [{ server: { host: 1 } }, 'server.host'],
      [{ server: { port: 0 } }, 'server.port'],
      [{ server: { port: 65536 } }, 'server.port'],
      [{ server: { port: '8080' } }, 'server.port'],
      [{ server: { port: 80.5 } }, 'server.port'],
      [{ server: { base_path: 'relayapi/' } }, 'server.base_path'],
      [{ server: { base_path: '/relayapi' } }, 'server.base_path'],
      [{ server: { base_path: '/a//' } }, 'server.base_path'],
      [{ server: { base_path: '/a%2f/' } }, 'server.base_path'],
      [{ server: { base_path: '/a?b/' } }, 'server.base_path'],
      [{ server: { timeout: 1 } }, 'server.timeout'],
      [{ crypto: { method: 'aes-256-cbc' } }, 'crypto.method'],
      [{ crypto: { key_id: '' } }, 'crypto.key_id'],
      [{ crypto: { key_id: 'x'.repeat(33) } }, 'crypto.key_id'],
      [{ crypto: { key_id: 'bad id' } }, 'crypto.key_id'],
      [{ crypto: { key: 'short' } }, 'crypto.key'],
      [{ crypto: { key: `${'A'.repeat(43)}=` } }, 'crypto.key'],
      [{ crypto: { key: `${'A'.repeat(42)}B` } }, 'crypto.key'],
      [{ crypto: { key: `${'A'.repeat(42)}+` } }, 'crypto.key'],
      [{ crypto: { key: 'A'.repeat(44) } }, 'crypto.key'],
      [{ crypto: { tenant_id: 'x'.repeat(65) } }, 'crypto.tenant_id'],
      [{ crypto: { previous_keys: {} } }, 'crypto.previous_keys'],
      [{ crypto: { previous_keys: [{ key_id: 'k0' }] } }, 'crypto.previous_keys[0].key'],
      [{ crypto: { previous_keys: [{ key_id: 'k0', key: 'x', note: 1 }] } }, 'crypto.previous_keys[0].note'],
      [
        { crypto: { previous_keys: [{ key_id: 'k1', key: 'A'.repeat(43) }] } },
        'crypto.previous_keys[0].key_id',
      ],
    ];
    for (const [over, field] of cases) refuses(raiObject(/** @type {object} */ (over)), field);
  });

  it('requires every required field', () => {
    for (const [section, name] of [
      [null, 'version'],
      [null, 'server'],
      [null, 'crypto'],
      ['server', 'host'],
      ['server', 'port'],
      ['crypto', 'method'],
      ['crypto', 'key_id'],
      ['crypto', 'key'],
      ['crypto', 'tenant_id'],
    ]) {
      const rai = /** @type {Record<string, any>} */ (raiObject());
      if (section === null) delete rai[name];
      else delete rai[section][name];
      refuses(rai, section === null ? name : `${section}.${name}`);
    }
  });

  it('never echoes key material in its messages', () => {
    const secret = 'S'.repeat(42) + 'X';
    assert.throws(
      () => loadConfig(raiObject({ crypto: { key: secret } })),
      (err) => err instanceof Error && !err.message.includes(secret),
    );
  });

  it('reads key validity windows; files without them stay open', () => {
    const rai = raiObject({ crypto: { not_before: 100, not_after: 200 } });
    rai.crypto.previous_keys[0].not_after = 150;
    const c = loadConfig(rai);
    assert.deepEqual([c.notBefore, c.notAfter], [100, 200]);
    assert.deepEqual([c.previousKeys[0].notBefore, c.previousKeys[0].notAfter], [null, 150]);
    assert.deepEqual(
      [99, 100, 199, 200].map((t) => keyInForce(c, t)),
      [false, true, true, false],
    );
    const open = loadConfig(raiObject());
    assert.deepEqual([open.notBefore, open.notAfter], [null, null]);
    assert.ok(keyInForce(open, 0) && keyInForce(open, Number.MAX_SAFE_INTEGER));
  });

  it('names the field of a bad window', () => {
    const cases = [
      [{ crypto: { not_before: -1 } }, 'crypto.not_before'],
      [{ crypto: { not_after: 2 ** 53 } }, 'crypto.not_after'],
      [{ crypto: { not_after: 1.5 } }, 'crypto.not_after'],
      [{ crypto: { not_after: '1790000000' } }, 'crypto.not_after'],
      [{ crypto: { not_after: null } }, 'crypto.not_after'],
      [{ crypto: { not_before: 5, not_after: 5 } }, 'crypto.not_after'],
      [{ server: { not_after: 1 } }, 'server.not_after'],
    ];
    for (const [over, field] of cases) refuses(raiObject(/** @type {object} */ (over)), field);
    const rai = raiObject();
    Object.assign(rai.crypto.previous_keys[0], { not_before: 7, not_after: 6 });
    refuses(rai, 'crypto.previous_keys[0].not_after');
  });
});
