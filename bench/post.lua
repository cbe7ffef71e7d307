-- The request every target gets: what the OpenAI SDK sends for a small chat completion. The client
-- Authorization header is a placeholder the proxies must replace, as with a real relay URL.
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer unused"
