// The page's script, bundled for the browser by esbuild (`npm run build` → dist/app.js).
//
// It holds no API key. It asks its own server for a relay base URL (POST /api/session), gives that URL
// to the official openai SDK as `baseURL`, and streams each reply into the DOM as the relay passes the
// provider's server-sent events through. The URL carries an encrypted token, so it is kept in memory
// only: never shown, logged or stored.
import OpenAI from 'openai';

/** Seconds before `expiresAt` at which a cached URL is replaced rather than risked on a new call. */
const EXPIRY_MARGIN_SECONDS = 30;
/** Relay error codes that a fresh URL cures (docs: relay error codes); anything else is shown as is. */
const RENEWABLE = new Set(['token_expired', 'token_exhausted', 'token_revoked']);

const messagesEl = /** @type {HTMLOListElement} */ (document.getElementById('messages'));
const form = /** @type {HTMLFormElement} */ (document.getElementById('composer'));
const prompt = /** @type {HTMLTextAreaElement} */ (document.getElementById('prompt'));
const sendButton = /** @type {HTMLButtonElement} */ (document.getElementById('send'));
const statusEl = /** @type {HTMLElement} */ (document.getElementById('status'));

/** @type {{ role: 'user' | 'assistant', content: string }[]} */
const history = [];
/** @type {{ ai: OpenAI, model: string, expiresAt: number } | null} */
let session = null;

/**
 * @param {string} text
 * @param {boolean} [isError]
 */
function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle('error', isError);
}

/**
 * @param {'user' | 'assistant'} role
 * @param {string} text
 * @returns {HTMLLIElement}
 */
function addMessage(role, text) {
  const li = document.createElement('li');
  li.className = `message ${role}`;
  // textContent, never innerHTML: model output is untrusted text.
  li.textContent = text;
  messagesEl.append(li);
  li.scrollIntoView({ block: 'end' });
  return li;
}

/** Asks the page's server for a fresh relay URL and builds an SDK client on it. */
async function newSession() {
  const res = await fetch('/api/session', { method: 'POST' });
  if (!res.ok) {
    const detail = await res.json().catch(() => ({}));
    throw new Error(`the server gave no relay URL (${res.status}${detail.error ? `: ${detail.error}` : ''})`);
  }
  const { baseURL, model, expiresAt } = await res.json();
  return {
    // The relay reads the token from the URL and ignores this key; the SDK merely insists on one.
    ai: new OpenAI({ baseURL, apiKey: 'unused', dangerouslyAllowBrowser: true }),
    model,
    expiresAt,
  };
}

async function currentSession() {
  if (session === null || session.expiresAt - EXPIRY_MARGIN_SECONDS <= Date.now() / 1000) {
    session = await newSession();
  }
  return session;
}

/**
 * Streams one reply into `bubble`. Renews the relay URL once when the relay says the old one is
 * spent, but only before any text arrived, so a reply is never duplicated.
 *
 * @param {HTMLLIElement} bubble
 * @returns {Promise<string>} the reply's text
 */
async function streamReply(bubble) {
  for (let attempt = 0; ; attempt += 1) {
    const { ai, model } = await currentSession();
    let text = '';
    try {
      const stream = await ai.chat.completions.create({ model, messages: history, stream: true });
      for await (const chunk of stream) {
        const piece = chunk.choices[0]?.delta?.content;
        if (piece) {
          text += piece;
          bubble.textContent = text;
          bubble.scrollIntoView({ block: 'end' });
        }
      }
      return text;
    } catch (err) {
      const renewable = err instanceof OpenAI.APIError && RENEWABLE.has(String(err.code));
      if (!renewable || attempt > 0 || text !== '') throw err;
      session = null;
    }
  }
}

/** @param {string} text */
async function send(text) {
  history.push({ role: 'user', content: text });
  addMessage('user', text);
  const bubble = addMessage('assistant', '');
  bubble.dataset.state = 'streaming';
  sendButton.disabled = true;
  setStatus('Streaming…');
  try {
    const reply = await streamReply(bubble);
    history.push({ role: 'assistant', content: reply });
    bubble.dataset.state = 'done';
    setStatus(`Ready · ${session?.model ?? ''}`);
  } catch (err) {
    // Keep the conversation consistent: the unanswered question is not sent again with the next one.
    history.pop();
    bubble.dataset.state = 'error';
    bubble.textContent = err instanceof Error ? err.message : String(err);
    setStatus('The last message failed', true);
  } finally {
    sendButton.disabled = false;
    prompt.focus();
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = prompt.value.trim();
  if (text === '' || sendButton.disabled) return;
  prompt.value = '';
  void send(text);
});

prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

sendButton.disabled = false;
setStatus('Ready');
document.body.dataset.ready = 'true';
