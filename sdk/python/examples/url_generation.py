"""Print relay URLs for a frontend: the provider key never leaves this (backend) process.

Run: OPENAI_API_KEY=... RELAYAPI_RAI=default.rai python examples/url_generation.py
"""

from __future__ import annotations

import os
import sys

from relayapi import RelayAPIClient, RelayAPIError


def main() -> int:
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        print("set OPENAI_API_KEY to the provider key the relay should use", file=sys.stderr)
        return 2
    try:
        client = RelayAPIClient(os.environ.get("RELAYAPI_RAI", "default.rai"))
        # One token, good for 20 calls within 30 minutes, only for chat with two models.
        token = client.create_token(
            api_key=api_key,
            max_calls=20,
            expire_seconds=1800,
            provider="openai",
            allowed_models=["gpt-4o-mini", "gpt-4o"],
            rate_limit=(5, 60),
        )
    except RelayAPIError as exc:
        print(exc, file=sys.stderr)
        return 1

    print("base URL (OpenAI(base_url=...)):", client.url_for_token(token))
    for api_type in ("chat_completions", "images_generations", "embeddings"):
        print(f"{api_type} URL:", client.url_for_token(token, api_type))
    print("query form:", client.query_url_for_token(token))
    print("header form: base_url =", client.relay_base_url, "and the token as api_key")

    # Or mint and build in one step; this is a second, independent token.
    print("one-step:", client.generate_url(api_key=api_key, max_calls=1, expire_seconds=300))
    return 0


if __name__ == "__main__":
    sys.exit(main())
