// What the browser test runs against: a stand-in for the OpenAI API that streams on cue, the real relay
// binary with its stdout and stderr captured, and Debian's Chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Debian's package; the test never downloads a browser. */
export const CHROMIUM = '/usr/bin/chromium';
/** Milliseconds to wait for the relay's "listening" line: a cold start under a busy CI box is slow. */
const RELAY_STARTUP_MS = 30000;
/** Milliseconds the mock waits for the test's cue before giving up on a stream (a failed test must not hang). */
const CUE_TIMEOUT_MS = 20000;
/** Milliseconds between events when the mock is not gated: still a stream, never one burst. */
const UNGATED_PAUSE_MS = 20;
/** Seconds the relay drains in-flight streams on SIGTERM; nothing is in flight when the tests stop it. */
const RELAY_SHUTDOWN_GRACE = 2;

/**
 * The relay binary: $RELAYAPI_BIN, else the release build at the repository root.
 *
 * @returns {string}
 * @throws {Error} saying how to build it
 */
export function relayBinary() {
  const path = process.env.RELAYAPI_BIN || join(ROOT, 'target/release/relayapi');
  if (!existsSync(path)) {
    throw new Error(
      `no relay binary at ${path}: build it with \`cargo build --release\` at the repository root ` +
        `(${ROOT}), or point RELAYAPI_BIN at one`,
    );
  }
  return path;
}

/**
 * A stand-in for the OpenAI API. `POST /v1/chat/completions` with `stream: true` answers with
 * chat.completion.chunk events, one per piece of `pieces`. While `gated` is true (the default) it pauses
 * after each piece until `cue()` is called, so the test decides when the next piece may leave; with
 * `gated` false it pauses a few milliseconds instead. Every request is recorded in `seen`.
 *
 * @param {string[]} pieces
 */
export async function startMockUpstream(pieces) {
  /** @type {{ method: string, url: string, headers: import('node:http').IncomingHttpHeaders, body: string }[]} */
  const seen = [];
  let cues = 0;
  /** @type {(() => void) | null} */
  let waiter = null;

  /** Resolves true at the next cue, false after CUE_TIMEOUT_MS. */
  const nextCue = () =>
    new Promise((resolve) => {
      if (cues > 0) {
        cues -= 1;
        return resolve(true);
      }
      const timer = setTimeout(() => {
        waiter = null;
        resolve(false);
      }, CUE_TIMEOUT_MS);
      waiter = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });

  const mock = {
    gated: true,
    seen,
    port: 0,
    /** Lets the stream send its next piece. */
    cue() {
      if (waiter) {
        const w = waiter;
        waiter = null;
        w();
      } else {
        cues += 1;
      }
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };

  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString();
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end('{"error":{"message":"no such mock route","type":"invalid_request_error"}}');
    }
    const { model, stream } = JSON.parse(body);
    if (!stream) {
      res.writeHead(400, { 'content-type': 'application/json' });
      return res.end('{"error":{"message":"the mock only streams","type":"invalid_request_error"}}');
    }
    const created = Math.floor(Date.now() / 1000);
    /** @param {object} delta @param {string | null} finish */
    const event = (delta, finish) =>
      `data: ${JSON.stringify({
        id: 'chatcmpl-mock-1',
        object: 'chat.completion.chunk',
        created,
        model,
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      })}\n\n`;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(event({ role: 'assistant', content: '' }, null));
    for (const piece of pieces) {
      res.write(event({ content: piece }, null));
      if (!mock.gated) await new Promise((resolve) => setTimeout(resolve, UNGATED_PAUSE_MS));
      else if (!(await nextCue())) return res.destroy();
    }
    res.write(event({}, 'stop'));
    res.end('data: [DONE]\n\n');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  mock.port = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
  return mock;
}

/**
 * Starts the relay binary on 127.0.0.1 port 0 with limits off and OpenAI pointed at `mockPort`; writes
 * its config and `.rai` into `dir`. Everything it prints, stdout and stderr, is kept in `output()`.
 *
 * With `tls` it serves HTTPS (and WSS) itself with the repository's test certificate for 127.0.0.1
 * (tests/certs, issued by the test CA).
 *
 * @param {{ dir: string, mockPort: number, tls?: boolean }} options
 */
export async function startRelay({ dir, mockPort, tls = false }) {
  const binary = relayBinary();
  const rai = {
    version: 1,
    server: { scheme: tls ? 'https' : 'http', host: '127.0.0.1', port: 8080, base_path: '/relayapi/' },
    crypto: {
      method: 'aes-256-gcm-hkdf-sha256',
      key_id: 'web-chat-1',
      key: randomBytes(32).toString('base64url'),
      tenant_id: 'web-chat',
    },
  };
  const raiPath = join(dir, 'web-chat.rai');
  writeFileSync(raiPath, JSON.stringify(rai, null, 2));
  // The repository's config.json, so settings added later are exercised too, with this test's overrides.
  const config = JSON.parse(readFileSync(join(ROOT, 'config.json'), 'utf8'));
  config.server = { ...config.server, host: '127.0.0.1', port: 0, shutdown_grace: RELAY_SHUTDOWN_GRACE };
  config.rate_limit.requests_per_second = 0;
  config.rate_limit.ip_limit = { ...config.rate_limit.ip_limit, requests_per_second: 0 };
  config.providers = { openai: { base_url: `http://127.0.0.1:${mockPort}/v1` } };
  config.api_keys = {};
  config.store = { type: 'memory' };
  // The access log is what could leak a token, so it must be on for the test to mean anything.
  config.log = { ...config.log, access: true };
  if (tls) {
    config.tls = {
      cert_file: join(ROOT, 'tests/certs/server.pem'),
      key_file: join(ROOT, 'tests/certs/server.key'),
    };
  }
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  const child = spawn(binary, ['--config', configPath, '--rai', raiPath], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH },
  });
  /** @type {string[]} */
  const stdout = [];
  /** @type {string[]} */
  const stderr = [];
  // Keep draining both pipes for the relay's whole life: a full pipe would block its logging.
  createInterface({ input: /** @type {import('node:stream').Readable} */ (child.stdout) }).on('line', (l) =>
    stdout.push(l),
  );
  const errLines = createInterface({ input: /** @type {import('node:stream').Readable} */ (child.stderr) });
  errLines.on('line', (l) => stderr.push(l));
  const exited = once(child, 'exit');

  const addr = await new Promise((resolve, reject) => {
    const fail = (/** @type {string} */ why) =>
      reject(new Error(`relay ${why}:\n${[...stderr, ...stdout].join('\n')}`));
    const timer = setTimeout(() => fail('did not log "listening" in time'), RELAY_STARTUP_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      fail(`exited early (code ${code}, signal ${signal})`);
    });
    errLines.on('line', (line) => {
      try {
        const entry = JSON.parse(line);
        if (entry.msg === 'listening' && typeof entry.addr === 'string') {
          clearTimeout(timer);
          resolve(entry.addr);
        }
      } catch {
        // not a JSON line: kept in the output all the same
      }
    });
  });
  const port = Number(String(addr).split(':').pop());
  return {
    port,
    /** The `.rai` a backend uses to reach this relay. */
    rai: { ...rai, server: { ...rai.server, port } },
    /** Access-log lines (stdout) parsed as JSON; non-JSON lines are skipped. */
    accessLog() {
      return stdout.flatMap((line) => {
        try {
          return [JSON.parse(line)];
        } catch {
          return [];
        }
      });
    },
    /**
     * The access-log lines from index `from` on, once `count` of them match `pred`. The relay writes its
     * log from a thread of its own, so a line can land a few milliseconds after the answer; this waits
     * for it (at most `ms`) instead of reading once.
     * @param {number} from
     * @param {(e: any) => boolean} pred
     * @param {number} count
     */
    async accessLogFrom(from, pred, count, ms = 3000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const lines = this.accessLog().slice(from);
        if (lines.filter(pred).length >= count || Date.now() > deadline) {
          return lines;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    /** Everything the relay printed so far, stdout and stderr. */
    output() {
      return [...stdout, ...stderr].join('\n');
    },
    /** SIGTERM, then waits for the exit so every log line has been read. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The GUID of RFC 6455 §1.3, appended to a key for its `Sec-WebSocket-Accept`. */
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** What every `response.done` of the realtime stand-in reports, in the Realtime API's shape. */
export const REALTIME_USAGE = {
  total_tokens: 57,
  input_tokens: 40,
  output_tokens: 17,
  input_token_details: { text_tokens: 30, audio_tokens: 10, cached_tokens: 8 },
  output_token_details: { text_tokens: 5, audio_tokens: 12 },
};

/**
 * One server frame (unmasked, FIN set) with a payload under 64 KiB.
 *
 * @param {number} opcode
 * @param {Buffer} payload
 */
function serverFrame(opcode, payload) {
  const head =
    payload.length < 126
      ? Buffer.from([0x80 | opcode, payload.length])
      : Buffer.from([0x80 | opcode, 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, payload]);
}

/**
 * The first whole client frame in `buf` (masked, payload under 64 KiB, as a browser sends small events),
 * unmasked, or null when more bytes are needed.
 *
 * @param {Buffer} buf
 * @returns {{ opcode: number, payload: Buffer, used: number } | null}
 */
function clientFrame(buf) {
  if (buf.length < 2) return null;
  let len = buf[1] & 0x7f;
  let at = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    at = 4;
  }
  if (!(buf[1] & 0x80)) throw new Error('an unmasked client frame reached the mock');
  if (buf.length < at + 4 + len) return null;
  const mask = buf.subarray(at, at + 4);
  const payload = Buffer.from(buf.subarray(at + 4, at + 4 + len));
  for (let i = 0; i < payload.length; i += 1) payload[i] ^= mask[i % 4];
  return { opcode: buf[0] & 0x0f, payload, used: at + 4 + len };
}

/**
 * A stand-in for OpenAI's Realtime API over WebSocket, on `node:http`'s upgrade event: it records every
 * handshake in `seen` and every client event in `received`, sends `session.created` on open, and answers
 * `response.create` with `response.created`, two `response.output_text.delta`, one
 * `response.output_audio.delta` and `response.done` carrying {@link REALTIME_USAGE}. It chooses the
 * `realtime` subprotocol when offered, as OpenAI does, and answers a close frame with its own.
 */
export async function startMockRealtime() {
  /** @type {{ url: string, headers: import('node:http').IncomingHttpHeaders }[]} */
  const seen = [];
  /** @type {any[]} */
  const received = [];
  const server = createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'application/json' });
    res.end('{"error":{"message":"WebSocket only","type":"invalid_request_error"}}');
  });
  /** @type {Set<import('node:stream').Duplex>} */
  const sockets = new Set();
  server.on('upgrade', (req, socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    seen.push({ url: req.url ?? '', headers: req.headers });
    const accept = createHash('sha1')
      .update(String(req.headers['sec-websocket-key']) + WS_GUID)
      .digest('base64');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim());
    socket.on('error', () => {});
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n` +
        (offered.includes('realtime') ? 'Sec-WebSocket-Protocol: realtime\r\n' : '') +
        '\r\n',
    );
    const send = (/** @type {object} */ event) =>
      socket.write(serverFrame(0x1, Buffer.from(JSON.stringify(event))));
    const model = new URL(req.url ?? '/', 'http://mock').searchParams.get('model');
    send({ type: 'session.created', session: { model } });
    let buf = Buffer.alloc(0);
    socket.on('data', (data) => {
      buf = Buffer.concat([buf, data]);
      for (let f = clientFrame(buf); f; f = clientFrame(buf)) {
        buf = buf.subarray(f.used);
        if (f.opcode === 0x8) {
          socket.end(serverFrame(0x8, f.payload.subarray(0, 2)));
          return;
        }
        if (f.opcode !== 0x1) continue;
        const event = JSON.parse(f.payload.toString());
        received.push(event);
        if (event.type !== 'response.create') continue;
        const id = `resp_mock_${received.length}`;
        send({ type: 'response.created', response: { id, status: 'in_progress', usage: null } });
        for (const delta of ['Hello', ' from the mock']) {
          send({ type: 'response.output_text.delta', response_id: id, delta });
        }
        send({ type: 'response.output_audio.delta', response_id: id, delta: 'AAAAAAAA' });
        send({ type: 'response.done', response: { id, status: 'completed', usage: REALTIME_USAGE } });
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    seen,
    received,
    port: /** @type {import('node:net').AddressInfo} */ (server.address()).port,
    async close() {
      // Upgraded sockets are the mock's own, not the HTTP server's: closeAllConnections skips them.
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/** The flags a root user on a closed network needs; playwright-core adds its automation flags. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Launches Debian's Chromium headless with a fresh profile in `userDataDir`.
 *
 * @param {string} userDataDir
 * @param {{ ignoreHTTPSErrors?: boolean }} [options] trust any certificate (the relay's test one)
 * @returns {Promise<import('playwright-core').BrowserContext>}
 * @throws {Error} saying how to install Chromium when it is missing
 */
export async function launchChromium(userDataDir, { ignoreHTTPSErrors = false } = {}) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no browser at ${CHROMIUM}: install Debian's with \`apt-get install -y chromium\``);
  }
  // launchPersistentContext passes userDataDir as --user-data-dir: a fresh, explicit profile per run.
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 900, height: 640 },
    ignoreHTTPSErrors,
  });
}
