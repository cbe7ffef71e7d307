// The example's backend: serves the chat page and hands the page a relay base URL minted with
// relayapi-tokens. The provider key never leaves this process except encrypted inside the token, so the
// browser, its devtools and its extensions only ever see a URL that is limited in calls, lifetime,
// endpoint, model and origin.
//
// Run it by hand (README.md):  OPENAI_API_KEY=... npm start
// The test suite imports createChatServer() and runs it on port 0 next to a real relay.
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { RelayAPIClient, RelayAPIError } from 'relayapi-tokens';

/** Calls one minted URL allows: enough for a chat session, never an open tap on the key. */
export const DEFAULT_MAX_CALLS = 20;
/** Seconds one minted URL lives; the page asks for a fresh one when it has expired or is used up. */
export const DEFAULT_EXPIRE_SECONDS = 900;
export const DEFAULT_MODEL = 'gpt-4o-mini';
/** The only provider path the page needs; a leaked URL cannot be spent on images or embeddings. */
const CHAT_PATH = '/chat/completions';
/** /api/session needs no body; anything larger than this is a mistake or abuse, so it is refused. */
const MAX_SESSION_BODY_BYTES = 1024;

const HERE = fileURLToPath(new URL('.', import.meta.url));

/** Everything the server hands out besides /api/session; read per request so a rebuild shows at once. */
const STATIC = new Map([
  ['/', { file: 'public/index.html', type: 'text/html; charset=utf-8' }],
  ['/style.css', { file: 'public/style.css', type: 'text/css; charset=utf-8' }],
  ['/app.js', { file: 'dist/app.js', type: 'text/javascript; charset=utf-8' }],
  ['/app.js.map', { file: 'dist/app.js.map', type: 'application/json; charset=utf-8' }],
]);

/**
 * `scheme://host[:port]` exactly as a browser sends it in `Origin`, or null if `value` is not one.
 *
 * @param {string} value
 * @returns {string | null}
 */
function canonicalOrigin(value) {
  try {
    const url = new URL(value);
    return url.origin === value && (url.protocol === 'http:' || url.protocol === 'https:') ? value : null;
  } catch {
    return null;
  }
}

/**
 * The origin a browser shows for a page served from this listening address, or null for a wildcard
 * address, where the name users type cannot be guessed.
 *
 * @param {import('node:net').AddressInfo | string | null} address
 * @returns {string | null}
 */
function originOfAddress(address) {
  if (address === null || typeof address === 'string') return null;
  if (address.address === '0.0.0.0' || address.address === '::') return null;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

/**
 * @param {import('node:http').ServerResponse} res
 * @param {number} status
 * @param {unknown} doc
 */
function sendJson(res, status, doc) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(doc));
}

/**
 * Reads and discards a request body, refusing one over `limit` bytes.
 *
 * @param {import('node:http').IncomingMessage} req
 * @param {number} limit
 * @returns {Promise<boolean>} false when the body was too large
 */
async function drainBody(req, limit) {
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) return false;
  }
  return true;
}

/**
 * @typedef {object} ChatServerOptions
 * @property {RelayAPIClient} client the backend's relay client (its `.rai` names the relay's address)
 * @property {string} [apiKey] the provider key carried, encrypted, in each token
 * @property {string} [keyRef] instead of `apiKey`: the name of a key the relay holds (`config.json` `api_keys`)
 * @property {string} [model] the one model the page may use
 * @property {number} [maxCalls] calls per minted URL
 * @property {number} [expireSeconds] lifetime of a minted URL
 * @property {string} [pageOrigin] the page's origin as browsers send it (`http://127.0.0.1:3000`);
 *   default: derived from the listening address, which needs a specific (non-wildcard) host
 * @property {(line: string) => void} [log] where the one-line-per-request log goes (default stdout)
 */

/**
 * An HTTP server for the chat page: `GET /` (the page), `/style.css`, `/app.js` (the esbuild bundle in
 * dist/) and `POST /api/session`, which answers `{ baseURL, model, expiresAt, maxCalls }`.
 *
 * `/api/session` only answers a browser on the page's own origin (its `Origin` header must match), so
 * another site cannot mint URLs that spend the key. A real application would also authenticate its
 * user here and rate-limit per user; the example has no users.
 *
 * @param {ChatServerOptions} options
 * @returns {import('node:http').Server}
 * @throws {TypeError} when the options are inconsistent
 */
export function createChatServer(options) {
  const {
    client,
    apiKey,
    keyRef,
    model = DEFAULT_MODEL,
    maxCalls = DEFAULT_MAX_CALLS,
    expireSeconds = DEFAULT_EXPIRE_SECONDS,
    pageOrigin,
    log = (line) => console.log(line),
  } = options;
  if (!(client instanceof RelayAPIClient)) throw new TypeError('client must be a RelayAPIClient');
  if (Boolean(apiKey) === Boolean(keyRef)) throw new TypeError('pass exactly one of apiKey and keyRef');
  if (pageOrigin !== undefined && canonicalOrigin(pageOrigin) === null) {
    throw new TypeError(`pageOrigin must look like http://host:port, got ${JSON.stringify(pageOrigin)}`);
  }
  const credential = apiKey ? { apiKey } : { keyRef };
  // The page may talk to itself and to the relay, nothing else: a script injected some day still could
  // not send the relay URL elsewhere.
  const securityHeaders = {
    'content-security-policy': [
      "default-src 'none'",
      "script-src 'self'",
      "style-src 'self'",
      "img-src 'self' data:",
      `connect-src 'self' ${client.origin}`,
      "base-uri 'none'",
      "form-action 'self'",
      "frame-ancestors 'none'",
    ].join('; '),
    'x-content-type-options': 'nosniff',
    // The page's URL is harmless, but nothing about it needs to reach the relay or the provider.
    'referrer-policy': 'no-referrer',
  };

  /** @type {import('node:http').Server} */
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    res.on('finish', () => log(`${req.method} ${path} ${res.statusCode}`));
    route(req, res, path).catch((err) => {
      console.error('web-chat: request failed:', err);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });

  /** @returns {string | null} */
  const currentPageOrigin = () => pageOrigin ?? originOfAddress(server.address());

  /**
   * @param {import('node:http').IncomingMessage} req
   * @param {import('node:http').ServerResponse} res
   * @param {string} path
   */
  async function route(req, res, path) {
    if (path === '/api/session') return session(req, res);
    const entry = STATIC.get(path);
    if (entry === undefined) return sendJson(res, 404, { error: 'not found' });
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return sendJson(res, 405, { error: 'method not allowed' });
    }
    let body;
    try {
      body = await readFile(resolve(HERE, entry.file));
    } catch (err) {
      if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'ENOENT') throw err;
      return sendJson(res, 503, { error: `${entry.file} is missing: run \`npm run build\`` });
    }
    res.writeHead(200, {
      ...securityHeaders,
      'content-type': entry.type,
      'content-length': body.length,
      'cache-control': 'no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  /**
   * @param {import('node:http').IncomingMessage} req
   * @param {import('node:http').ServerResponse} res
   */
  async function session(req, res) {
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return sendJson(res, 405, { error: 'method not allowed' });
    }
    const origin = currentPageOrigin();
    if (origin === null) {
      console.error('web-chat: listening on a wildcard address: set the page origin (PUBLIC_ORIGIN)');
      return sendJson(res, 500, { error: 'the server does not know its page origin' });
    }
    if (req.headers.origin !== origin) {
      return sendJson(res, 403, { error: `only pages on ${origin} may ask for a relay URL` });
    }
    if (!(await drainBody(req, MAX_SESSION_BODY_BYTES))) {
      res.setHeader('connection', 'close');
      return sendJson(res, 413, { error: 'this endpoint takes no body' });
    }
    let token;
    try {
      token = client.createToken({
        ...credential,
        provider: 'openai',
        maxCalls,
        expireSeconds,
        allowedEndpoints: [CHAT_PATH],
        allowedModels: [model],
        // The relay refuses the URL when a browser on any other origin presents it.
        allowedOrigins: [origin],
      });
    } catch (err) {
      // A bad key or option is the operator's mistake: say so in the server log, not to the browser.
      if (!(err instanceof RelayAPIError)) throw err;
      console.error(`web-chat: cannot mint a token: ${err.message}`);
      return sendJson(res, 500, { error: 'cannot mint a relay URL' });
    }
    const { exp } = client.decodeToken(token);
    sendJson(res, 200, { baseURL: client.urlForToken(token), model, expiresAt: exp, maxCalls });
  }

  return server;
}

/**
 * `npm start`: reads the environment, checks the bundle is built and serves until SIGINT/SIGTERM.
 *
 * @returns {Promise<number>} exit code
 */
async function main() {
  const env = process.env;
  const apiKey = env.OPENAI_API_KEY || undefined;
  const keyRef = env.RELAYAPI_KEY_REF || undefined;
  if (Boolean(apiKey) === Boolean(keyRef)) {
    console.error(
      'set exactly one of OPENAI_API_KEY (the provider key, sent to the relay inside each token) and ' +
        'RELAYAPI_KEY_REF (the name of a key in the relay config.json "api_keys")',
    );
    return 2;
  }
  if (!existsSync(resolve(HERE, 'dist/app.js'))) {
    console.error('dist/app.js is missing: run `npm run build` first (`npm start` does both)');
    return 2;
  }
  const host = env.HOST || '127.0.0.1';
  const port = Number(env.PORT || 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`PORT must be a port number (0 to 65535), got ${JSON.stringify(env.PORT)}`);
    return 2;
  }
  const pageOrigin = env.PUBLIC_ORIGIN || undefined;
  if ((host === '0.0.0.0' || host === '::') && pageOrigin === undefined) {
    console.error(
      `HOST=${host} listens on every address, so the page origin cannot be guessed: set PUBLIC_ORIGIN ` +
        'to the origin users open, e.g. PUBLIC_ORIGIN=http://chat.example.test:3000',
    );
    return 2;
  }
  const raiPath = env.RELAYAPI_RAI
    ? resolve(env.RELAYAPI_RAI)
    : fileURLToPath(new URL('../../default.rai', import.meta.url));
  let server;
  try {
    server = createChatServer({
      client: new RelayAPIClient(raiPath),
      apiKey,
      keyRef,
      model: env.RELAYAPI_MODEL || DEFAULT_MODEL,
      pageOrigin,
    });
  } catch (err) {
    console.error(`web-chat: ${/** @type {Error} */ (err).message}`);
    return 2;
  }
  server.listen(port, host);
  await new Promise((ok, fail) => server.once('listening', ok).once('error', fail));
  console.log(`web-chat: open ${pageOrigin ?? originOfAddress(server.address())}/ (relay from ${raiPath})`);
  await new Promise((ok) => {
    process.once('SIGINT', ok);
    process.once('SIGTERM', ok);
  });
  server.close();
  server.closeAllConnections();
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error('web-chat:', err);
      process.exit(1);
    },
  );
}
