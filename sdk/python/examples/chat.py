"""Chat through a running relay, once with the official OpenAI SDK and once with the SDK's own helper.

Run: OPENAI_API_KEY=... RELAYAPI_RAI=default.rai python examples/chat.py "Say hello"
The relay must be running at the address in the .rai file. `pip install openai` for the first part.
"""

from __future__ import annotations

import os
import sys

from relayapi import APIError, RelayAPIClient, RelayAPIError

MODEL = os.environ.get("RELAYAPI_MODEL", "gpt-4o-mini")


def main() -> int:
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        print("set OPENAI_API_KEY to the provider key the relay should use", file=sys.stderr)
        return 2
    prompt = " ".join(sys.argv[1:]) or "Say hello in one short sentence."
    messages = [{"role": "user", "content": prompt}]
    client = RelayAPIClient(os.environ.get("RELAYAPI_RAI", "default.rai"))

    # What a frontend does: it only ever sees this URL, never the key.
    base_url = client.generate_url(api_key=api_key, max_calls=2, expire_seconds=300)
    try:
        from openai import OpenAI
    except ImportError:
        print("(openai not installed; skipping the official-SDK part)")
    else:
        reply = OpenAI(base_url=base_url, api_key="unused").chat.completions.create(
            model=MODEL, messages=messages
        )
        print("official SDK:", reply.choices[0].message.content)

    # What a backend script can do with the helper, streaming the answer as it arrives.
    token = client.create_token(api_key=api_key, max_calls=1, expire_seconds=300)
    try:
        print("helper: ", end="")
        for chunk in client.chat_completions(token, messages=messages, model=MODEL, stream=True):
            for choice in chunk.get("choices", []):
                print(choice.get("delta", {}).get("content") or "", end="", flush=True)
        print()
        print("usage:", client.get_usage(token))
    except APIError as exc:
        print(f"\nrelay said {exc.status} {exc.error_code}: {exc.message}", file=sys.stderr)
        return 1
    except RelayAPIError as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
