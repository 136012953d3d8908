"""A 3-turn text conversation with the unmodified google-genai SDK, printed as one JSON line.

Run by the e2e tests under each SDK version we support (3.x in the main venv, 2.x as Pipecat
pins it), so the same client code is proven against the server for both.

    python sdk_conversation.py BASE_URL [--vertex] [--api-key K] [--model M]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from google import genai
from google.genai import types, version

SYSTEM = "You are a helpful assistant. Always answer in French, in one short sentence."
TURNS = ["Hello! My name is Priya.", "What is the capital of Italy?", "What is my name?"]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("--vertex", action="store_true")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--model", default="gemini-live-2.5-flash-preview")
    args = parser.parse_args()
    http = types.HttpOptions(base_url=args.base_url)
    client = genai.Client(vertexai=True, api_key=args.api_key, http_options=http) if args.vertex \
        else genai.Client(api_key=args.api_key, http_options=http)
    config = types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0, system_instruction=SYSTEM)
    result: dict = {"sdk": version.__version__, "turns": []}
    async with client.aio.live.connect(model=args.model, config=config) as session:
        result["session_id"] = session.session_id
        for prompt in TURNS:
            await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=prompt)]))
            turn = {"prompt": prompt, "texts": [], "usage": None, "last": None}
            async for message in session.receive():
                if message.text:
                    turn["texts"].append(message.text)
                if message.usage_metadata:
                    u = message.usage_metadata
                    turn["usage"] = {"prompt": u.prompt_token_count, "response": u.response_token_count,
                                     "total": u.total_token_count}
                sc = message.server_content
                turn["last"] = {"turn_complete": bool(sc and sc.turn_complete),
                                "generation_complete": bool(sc and sc.generation_complete)}
            result["turns"].append(turn)
    if not args.vertex:
        result["models"] = [m.name for m in client.models.list()]
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
