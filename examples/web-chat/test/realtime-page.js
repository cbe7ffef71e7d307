// The browser side of the realtime test, bundled by esbuild when the test starts: the official `openai`
// package's browser WebSocket client (`OpenAIRealtimeWebSocket`), with the relay's base URL and the relay
// token as its API key, exactly as a page would set it up. `window.realtimeRoundTrip` opens a session,
// asks for one response and resolves with what arrived.
import OpenAI from 'openai';
import { OpenAIRealtimeWebSocket } from 'openai/realtime/websocket';

/** Milliseconds the page waits for a whole response before giving up. */
const ROUND_TRIP_MS = 15000;

/**
 * @param {{ baseURL: string, apiKey: string, model: string }} options
 * @returns {Promise<{ types: string[], text: string, usage: any, protocol: string, closeCode: number }>}
 */
async function realtimeRoundTrip({ baseURL, apiKey, model }) {
  const client = new OpenAI({ apiKey, baseURL, dangerouslyAllowBrowser: true });
  const rt = new OpenAIRealtimeWebSocket({ model, dangerouslyAllowBrowser: true }, client);
  /** @type {string[]} */
  const types = [];
  let text = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no response.done; events: ${types.join(',')}`)),
      ROUND_TRIP_MS,
    );
    rt.on('error', (err) => reject(new Error(`realtime error: ${err.message}`)));
    rt.socket.addEventListener('open', () => rt.send({ type: 'response.create' }));
    rt.on('event', (event) => {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type !== 'response.done') return;
      const usage = event.response.usage;
      const protocol = rt.socket.protocol;
      rt.socket.addEventListener('close', (closed) => {
        clearTimeout(timer);
        resolve({ types, text, usage, protocol, closeCode: closed.code });
      });
      rt.close({ code: 1000, reason: 'done' });
    });
  });
}

Object.assign(window, { realtimeRoundTrip });
document.body.dataset.ready = 'true';
