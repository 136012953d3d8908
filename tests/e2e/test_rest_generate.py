"""REST beside Live (issue 24): `client.models.count_tokens`, `generate_content` and
`generate_content_stream` of the unmodified google-genai SDK, on every API path it uses (its
default, v1 in 3.x; v1beta; v1alpha), against a real server process over TLS.

The scripted engine shows the protocol's shapes (usage, finish reasons, function calls, errors);
one call on the embedded default model shows a real answer.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Callable

import httpx
import pytest
from google import genai
from google.genai import errors, types

from tests.support.images import encode, sign

from .conftest import ServerProcess

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-flash"  # a REST model name: any Gemini name is served by the default pipeline
KEY = "rest-key"
BUDGET_KEY = "budget-key"
# None: the SDK's own default (v1 in google-genai 3.x; v1beta before), then the two named paths.
VERSIONS = [None, "v1beta", "v1alpha"]

SCRIPT = """
token_delay_ms = 5

[[reply]]
match = "crash"
error = "simulated engine failure"

[[reply]]
match = "weather"
tool = "get_weather"
args = [{ location = "Paris" }]

[[reply]]
match = "capital of France"
text = "The capital of France is Paris."

[[reply]]
match = "instruction"
text = "I was told: {system}"

[[reply]]
match = "what is my name"
recall = "my name is (\\\\w+)"
text = "Your name is {recall}."

[[reply]]
match = "sign"
text = "I read: {user}"

[[reply]]
match = "long"
text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
"""

WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="The current weather in a city.",
    parameters=types.Schema(type="OBJECT", properties={"location": types.Schema(type="STRING")},
                            required=["location"]))])


@pytest.fixture(scope="module")
def server(start_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    tmp = tmp_path_factory.mktemp("rest")
    (tmp / "replies.toml").write_text(SCRIPT)
    return start_server(f"""
[server]
api_keys = ["{KEY}", "{BUDGET_KEY}"]
max_frame_bytes = 1048576

[llm.default]
engine = "scripted"
script = "{tmp / 'replies.toml'}"

[turn]
engine = "silence"

[store]
path = "{tmp / 'state.sqlite3'}"

[limits]
tokens_per_minute = 5000
""")


_CLIENTS: list[genai.Client] = []


@pytest.fixture(scope="module", autouse=True)
def _close_clients(server: ServerProcess):
    """Close the SDK's kept-alive connections before the server stops (it would wait for them)."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def client(server: ServerProcess, version: str | None, key: str = KEY) -> genai.Client:
    made = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server.base_url, api_version=version))
    _CLIENTS.append(made)  # kept: a Client closes its HTTP connections when it is collected, under `.models`
    return made


def post(server: ServerProcess, path: str, *, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"x-goog-api-key": key} if key else {}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(server.cert)), timeout=30) as http:
        return http.post(f"{server.base_url}{path}", headers=headers, **kwargs)


def squeeze(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


# ---------------------------------------------------------------------------------------- counting


@pytest.mark.parametrize("version", VERSIONS)
def test_count_tokens_counts_text_and_images_as_google_does(server, version):
    models = client(server, version).models
    text = models.count_tokens(model=MODEL, contents="The quick brown fox jumps over the lazy dog.")
    assert text.total_tokens and text.total_tokens > 0
    image = types.Part.from_bytes(data=encode(sign("EXIT 12")), mime_type="image/jpeg")
    both = models.count_tokens(model=MODEL, contents=[types.Content(role="user", parts=[
        types.Part(text="The quick brown fox jumps over the lazy dog."), image])])
    assert both.total_tokens == text.total_tokens + 258  # one 768×432 image: one tile


def test_count_tokens_reports_each_modality_and_reads_a_generate_content_request(server):
    image = {"inlineData": {"mimeType": "image/png", "data": __import__("base64").b64encode(
        encode(sign("EXIT 12", size=(1600, 900)), "PNG")).decode()}}
    reply = post(server, f"/v1beta/models/{MODEL}:countTokens", json={"generateContentRequest": {
        "model": f"models/{MODEL}", "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "What does it say?"}, image]}]}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    details = {d["modality"]: d["tokenCount"] for d in body["promptTokensDetails"]}
    assert details["IMAGE"] == 3 * 2 * 258  # 1600×900: 3×2 tiles of 768×768
    assert body["totalTokens"] == details["TEXT"] + details["IMAGE"] and details["TEXT"] > 0


# ---------------------------------------------------------------------------------------- generating


@pytest.mark.parametrize("version", VERSIONS)
def test_generate_content_answers_a_conversation_with_usage_as_google_reports_it(server, version):
    models = client(server, version).models
    contents = [types.Content(role="user", parts=[types.Part(text="Hi, my name is Ada.")]),
                types.Content(role="model", parts=[types.Part(text="Hello Ada!")]),
                types.Content(role="user", parts=[types.Part(text="What is the capital of France?")])]
    config = types.GenerateContentConfig(system_instruction="Answer in one sentence.", temperature=0.2, top_p=0.9,
                                         top_k=20, max_output_tokens=100, stop_sequences=["\n\n"], candidate_count=1)
    response = models.generate_content(model=MODEL, contents=contents, config=config)
    assert response.text == "The capital of France is Paris."
    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.STOP and candidate.content.role == "model"
    usage = response.usage_metadata
    counted = models.count_tokens(model=MODEL, contents=contents).total_tokens
    # The prompt's count is what countTokens says for it (the instruction counts too).
    assert usage.prompt_token_count >= counted > 0
    assert usage.candidates_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.prompt_tokens_details[0].modality == types.MediaModality.TEXT
    assert response.model_version == MODEL and response.response_id
    # The history is read: the name from the first turn, the instruction as the system prompt.
    recalled = models.generate_content(model=MODEL, contents=[*contents[:2], "What is my name?"])
    assert recalled.text == "Your name is Ada."
    told = models.generate_content(model=MODEL, contents="What was your instruction?",
                                   config=types.GenerateContentConfig(system_instruction="Speak like a pirate."))
    assert "Speak like a pirate." in told.text


@pytest.mark.parametrize("version", VERSIONS)
def test_generate_content_stream_streams_the_answer_in_pieces(server, version):
    chunks = list(client(server, version).models.generate_content_stream(
        model=MODEL, contents="Count to sixteen, a long list please."))
    assert len(chunks) > 3
    text = "".join(c.text or "" for c in chunks)
    assert text == "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.candidates_token_count > 0 and last.usage_metadata.prompt_token_count > 0
    assert len({c.response_id for c in chunks}) == 1


def test_the_vertex_path_counts_and_generates_too(server):
    """The other API path: the SDK in Vertex mode (an express-mode key) calls
    /v1beta1/publishers/google/models/{model}:countTokens, :generateContent and :streamGenerateContent."""
    vertex = genai.Client(vertexai=True, api_key=KEY, http_options=types.HttpOptions(base_url=server.base_url))
    _CLIENTS.append(vertex)
    counted = vertex.models.count_tokens(model=MODEL, contents="The quick brown fox jumps over the lazy dog.")
    assert counted.total_tokens == client(server, None).models.count_tokens(
        model=MODEL, contents="The quick brown fox jumps over the lazy dog.").total_tokens > 0
    response = vertex.models.generate_content(model=MODEL, contents="What is the capital of France?")
    assert response.text == "The capital of France is Paris."
    assert response.usage_metadata.candidates_token_count > 0
    chunks = list(vertex.models.generate_content_stream(model=MODEL, contents="Count to sixteen, a long list please."))
    assert len(chunks) > 3 and "".join(c.text or "" for c in chunks).endswith("fifteen sixteen")


async def test_the_async_client_streams_too(server):
    api = client(server, "v1alpha").aio
    try:
        stream = await api.models.generate_content_stream(model=MODEL, contents="What is the capital of France?")
        text = "".join([chunk.text or "" async for chunk in stream])
    finally:
        await api.aclose()  # or the server, stopping, waits for its open connection
    assert text == "The capital of France is Paris."


def test_max_output_tokens_ends_the_answer_with_max_tokens(server):
    response = client(server, None).models.generate_content(
        model=MODEL, contents="A long list please.", config=types.GenerateContentConfig(max_output_tokens=3))
    assert response.text.split() == ["one", "two", "three"]
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


@pytest.mark.parametrize("version", VERSIONS)
def test_function_declarations_are_answered_with_function_calls_and_their_results_are_read(server, version):
    models = client(server, version).models
    config = types.GenerateContentConfig(tools=[WEATHER])
    question = types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])
    response = models.generate_content(model=MODEL, contents=[question], config=config)
    calls = response.function_calls
    assert calls and calls[0].name == "get_weather" and calls[0].args == {"location": "Paris"}
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    result = types.Part.from_function_response(name="get_weather", response={"temperature_c": 21, "sky": "clear"})
    answer = models.generate_content(model=MODEL, config=config, contents=[
        question, response.candidates[0].content, types.Content(role="user", parts=[result])])
    assert not answer.function_calls
    assert '"temperature_c":21' in answer.text and "get_weather" in answer.text  # the scripted engine says the result
    # Told not to call (toolConfig NONE), the model answers instead.
    refused = models.generate_content(model=MODEL, contents=[question], config=types.GenerateContentConfig(
        tools=[WEATHER], tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode="NONE"))))
    assert not refused.function_calls


def test_the_sdk_runs_a_python_function_itself_and_gets_the_answer(server):
    asked: list[str] = []

    def get_weather(location: str) -> dict:
        """The current weather in a city."""
        asked.append(location)
        return {"temperature_c": 18}

    response = client(server, "v1beta").models.generate_content(
        model=MODEL, contents="What is the weather in Paris?", config=types.GenerateContentConfig(tools=[get_weather]))
    assert asked == ["Paris"]  # automatic function calling: one call, then the answer (not the call again)
    assert '"temperature_c":18' in response.text


def test_a_streamed_function_call_comes_in_the_last_chunk(server):
    chunks = list(client(server, None).models.generate_content_stream(
        model=MODEL, contents="Weather in Paris?", config=types.GenerateContentConfig(tools=[WEATHER])))
    calls = [call for chunk in chunks for call in chunk.function_calls or ()]
    assert [(c.name, c.args) for c in calls] == [("get_weather", {"location": "Paris"})]


def test_json_mode_answers_json(server):
    response = client(server, None).models.generate_content(
        model=MODEL, contents="What is the capital of France?", config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema={"type": "OBJECT", "properties": {"answer": {"type": "STRING"}}}))
    assert isinstance(json.loads(response.text), dict)


def test_an_image_is_seen_through_the_vision_engine(server):
    image = types.Part.from_bytes(data=encode(sign("EXIT 12")), mime_type="image/jpeg")
    response = client(server, None).models.generate_content(
        model=MODEL, contents=[types.Content(role="user", parts=[image, types.Part(text="What does the sign say?")])])
    said = squeeze(response.text)
    # The scripted engine repeats the turn it read: the vision engine's note came before the words.
    assert "camera" in said and "exit 12" in said and said.endswith("what does the sign say"), response.text
    assert response.usage_metadata.prompt_tokens_details[-1].modality == types.MediaModality.IMAGE


# ---------------------------------------------------------------------------------------- refusals


def test_bad_requests_are_refused_as_google_refuses_them(server):
    path = f"/v1beta/models/{MODEL}:generateContent"
    ask = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    cases = {
        "malformed JSON": (post(server, path, content=b'{"contents": [}'), 400, "INVALID_ARGUMENT"),
        "no key": (post(server, path, key=None, json=ask), 403, "PERMISSION_DENIED"),
        "a wrong key": (post(server, path, key="wrong-key", json=ask), 400, "INVALID_ARGUMENT"),
        "an ephemeral token": (post(server, path, key="auth_tokens/abc", json=ask), 403, "PERMISSION_DENIED"),
        "an unknown model": (post(server, "/v1beta/models/no-such-model:generateContent", json=ask), 404,
                             "NOT_FOUND"),
        "an unknown field": (post(server, path, json={**ask, "contentz": []}), 400, "INVALID_ARGUMENT"),
        "no contents": (post(server, path, json={}), 400, "INVALID_ARGUMENT"),
        "a bad image": (post(server, path, json={"contents": [{"parts": [
            {"inlineData": {"mimeType": "image/png", "data": "bm90IGFuIGltYWdl"}}]}]}), 400, "INVALID_ARGUMENT"),
        "google search": (post(server, path, json={**ask, "tools": [{"googleSearch": {}}]}), 400, "INVALID_ARGUMENT"),
        "count, malformed": (post(server, f"/v1alpha/models/{MODEL}:countTokens", content=b"[1,"), 400,
                             "INVALID_ARGUMENT"),
        "count, no key": (post(server, f"/v1alpha/models/{MODEL}:countTokens", key=None, json=ask), 403,
                          "PERMISSION_DENIED"),
        "an unknown method": (post(server, f"/v1beta/models/{MODEL}:embedEverything", json=ask), 404, "NOT_FOUND"),
        "a body over the limit": (post(server, path, content=b'{"contents": "' + b"x" * (1 << 20) + b'"}'), 400,
                                  "INVALID_ARGUMENT"),
        "nested 5,000 deep": (post(server, path, content=b'{"contents": ' + b"[" * 5000 + b"]" * 5000 + b"}"), 400,
                              "INVALID_ARGUMENT"),
        "a system role": (post(server, path, json={"contents": [{"role": "system", "parts": [{"text": "x"}]}]}), 400,
                          "INVALID_ARGUMENT"),
    }
    for name, (reply, status, code) in cases.items():
        assert reply.status_code == status, (name, reply.text)
        error = reply.json()["error"]
        assert (error["code"], error["status"]) == (status, code), (name, error)
        assert error["message"] and "Traceback" not in reply.text, name
    assert "google_search" in cases["google search"][0].json()["error"]["message"]
    assert "exceeds the limit" in cases["a body over the limit"][0].json()["error"]["message"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_sdk_raises_client_errors_for_what_is_refused(server, version):
    models = client(server, version).models
    with pytest.raises(errors.ClientError) as missing:
        models.generate_content(model="no-such-model", contents="hi")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"
    with pytest.raises(errors.ClientError) as many:
        models.generate_content(model=MODEL, contents="hi", config=types.GenerateContentConfig(candidate_count=2))
    assert many.value.code == 400 and "one candidate" in many.value.message
    with pytest.raises(errors.ClientError) as unauthorized:
        client(server, version, key="wrong-key").models.count_tokens(model=MODEL, contents="hi")
    assert unauthorized.value.code == 400 and "API key not valid" in unauthorized.value.message


def test_an_engine_failure_is_a_server_error_without_a_traceback(server):
    models = client(server, None).models
    with pytest.raises(errors.ServerError) as failed:
        models.generate_content(model=MODEL, contents="crash now")
    assert failed.value.code == 500 and failed.value.message == "Internal error occurred."
    with pytest.raises(errors.APIError) as streamed:
        list(models.generate_content_stream(model=MODEL, contents="crash now"))
    assert streamed.value.code == 500


def test_a_key_over_its_token_budget_is_refused_with_the_quota_error(server):
    models = client(server, None, key=BUDGET_KEY).models
    with pytest.raises(errors.ClientError) as over:
        models.generate_content(model=MODEL, contents="word " * 6000)  # ~7,500 tokens, over 5,000 a minute
    assert over.value.code == 429 and over.value.status == "RESOURCE_EXHAUSTED"
    assert models.generate_content(model=MODEL, contents="What is the capital of France?").text  # small still goes


# ---------------------------------------------------------------------------------------- the embedded model


def test_generate_content_on_the_embedded_model_answers_sensibly(embedded_server):
    models = client(embedded_server, None, key="any").models
    counted = models.count_tokens(model=MODEL, contents="The quick brown fox jumps over the lazy dog.")
    assert counted.total_tokens == 10  # the model's own tokenizer, not an estimate
    response = models.generate_content(model=MODEL, contents="What is the capital of France?",
                                       config=types.GenerateContentConfig(temperature=0, max_output_tokens=40))
    print(repr(response.text), response.usage_metadata)
    assert "paris" in response.text.lower()
    assert response.usage_metadata.candidates_token_count > 0
