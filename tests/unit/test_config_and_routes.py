"""Configuration, model-name resolution and the Live paths the SDKs build."""

import asyncio
from pathlib import Path

import pytest

from openlive.config import ConfigError, load_config
from openlive.models import bare_model_id, resolve_model
from openlive.server.app import match_live_path
from openlive.server.auth import AuthError, KeyChecker, credential_from


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("OPENLIVE_API_KEYS", "OPENLIVE_HOST", "OPENLIVE_PORT", "OPENLIVE_DATA_DIR", "OPENLIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("path, version, vertex, constrained", [
    ("/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent", "v1", False, False),
    ("//ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent", "v1beta", False, False),
    ("/proxy/gemini//ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained",
     "v1alpha", False, True),
    ("/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent", "v1beta1", True, False),
    # Firebase AI Logic's Web SDK: Google AI backend, then Vertex (Agent Platform) with its location
    ("/ws/google.firebase.vertexai.v1beta.GenerativeService/BidiGenerateContent", "v1beta", False, False),
    ("/ws/google.firebase.vertexai.v1beta.LlmBidiService/BidiGenerateContent/locations/europe-west4",
     "v1beta", True, False),
])
def test_every_sdk_path_is_routed(path, version, vertex, constrained):
    route = match_live_path(path)
    assert (route.api_version, route.vertex, route.constrained) == (version, vertex, constrained)


@pytest.mark.parametrize("path", ["/ws/google.ai.generativelanguage.v1.GenerativeService.GenerateContent",
                                  "/ws/google.firebase.vertexai.v1beta.LlmBidiService/BidiGenerateContent/locations/",
                                  "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContentX", "/"])
def test_other_paths_are_not(path):
    assert match_live_path(path) is None


@pytest.mark.parametrize("name", ["gemini-live-2.5-flash-preview", "models/gemini-live-2.5-flash-preview",
                                  "publishers/google/models/gemini-live-2.5-flash-preview",
                                  "projects/p/locations/us-central1/publishers/google/models/gemini-live-2.5-flash-preview",
                                  "projects/my-firebase-project/models/gemini-live-2.5-flash-preview"])
def test_model_names_resolve_with_any_prefix(name):
    assert bare_model_id(name) == "gemini-live-2.5-flash-preview"
    assert resolve_model(load_config(), name).llm == "default"


def test_alias_table_is_extended_from_the_config_file(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text('[llm.remote]\nengine = "openai"\nbase_url = "http://h:1/v1"\n'
                    '[models]\n"mine" = "remote"\n"gemini-live-2.5-flash" = { llm = "remote", display_name = "X" }\n')
    config = load_config(path)
    assert resolve_model(config, "models/mine").llm == "remote"
    assert resolve_model(config, "gemini-live-2.5-flash").display_name == "X"
    assert resolve_model(config, "gemini-2.0-flash-live-001").llm == "default"
    assert resolve_model(config, "models/unknown") is None
    assert config.used_llms == ["default", "remote"]


@pytest.mark.parametrize("text, needle", [
    ('[server]\nprot = 1\n', "unknown setting(s) prot"),
    ('[llm.x]\nengine = "magic"\n[models]\n"m" = "x"\n', "engine must be one of"),
    ('[llm.x]\nengine = "openai"\n', "needs base_url"),
    ('[models]\n"m" = "nope"\n', "which no [llm.nope] defines"),
    ('[servers]\n', "unknown section"),
    ('[vision]\nengine = "magic"\n', "[vision] engine must be one of embedded, remote, none"),
    ('[vision]\nengine = "remote"\n', "[llm.default] is not an OpenAI-compatible server"),
    ('[vision]\nmax_waiting = 0\n', "must be at least 1"),
    ('[vision]\nfps = 3\n', "[vision]: unknown setting(s) fps"),
    ('[llm.default]\nprompt_cache_mib = -1\n', "prompt_cache_mib must be 0 to"),
])
def test_bad_config_is_a_clear_error(tmp_path, text, needle):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert needle in str(info.value)


def test_no_keys_refuses_a_public_address_but_keys_allow_it(monkeypatch):
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0"):
        load_config(host="0.0.0.0")
    monkeypatch.setenv("OPENLIVE_API_KEYS", "a, b")
    config = load_config(host="0.0.0.0", api_keys=("c",))
    assert config.api_keys == ("a", "b", "c")


def test_environment_settings_and_flags_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENLIVE_PORT", "9999")
    monkeypatch.setenv("OPENLIVE_DATA_DIR", str(tmp_path))
    assert load_config().port == 9999 and load_config().data_dir == tmp_path
    assert load_config(port=1234).port == 1234
    monkeypatch.setenv("OPENLIVE_PORT", "http")
    with pytest.raises(ConfigError, match="OPENLIVE_PORT"):
        load_config()


def test_llm_model_flag_changes_the_default_engine():
    assert load_config(llm_model="smollm2-135m").llms["default"].model == "smollm2-135m"


def test_credentials_from_every_place_the_sdks_put_them():
    assert credential_from({"x-goog-api-key": "a"}, {}) == "a"
    assert credential_from({}, {"key": "b"}) == "b"
    assert credential_from({"authorization": "Bearer c"}, {}) == "c"
    assert credential_from({}, {"access_token": "d"}) == "d"
    assert credential_from({}, {}) is None


def test_key_checker():
    KeyChecker([]).check(None)  # open server: anything goes
    checker = KeyChecker(["k1", "k2"])
    checker.check("k2")
    with pytest.raises(AuthError) as wrong:
        checker.check("k3")
    assert wrong.value.close_code == 1007
    with pytest.raises(AuthError) as missing:
        checker.check(None)
    assert missing.value.close_code == 1008
    assert "k1" not in repr(checker.__dict__)  # only digests are kept


@pytest.mark.parametrize("name", ["models/gemini-3.8-live", "gemini-3.8-live-extended-thinking",
                                  "projects/p/locations/us/publishers/google/models/gemini-3.1-flash-live-preview",
                                  "gemini-2.5-flash-native-audio-preview-12-2025"])
def test_any_gemini_live_name_is_served_by_the_default_pipeline(name):
    entry = resolve_model(load_config(), name)
    assert entry is not None and entry.llm == "default" and entry.name == bare_model_id(name)


@pytest.mark.parametrize("name", ["gpt-4o", "models/gemini-2.5-pro", "claude-live", "gemini-../live"])
def test_other_unknown_names_are_still_not_found(name):
    assert resolve_model(load_config(), name) is None


def test_the_frame_cap_is_off_unless_configured(tmp_path):
    assert load_config().max_frames_per_s == 0  # no cap: a client is read as fast as its session handles frames
    path = tmp_path / "c.toml"
    path.write_text("[server]\nmax_frames_per_s = 0.5\n")
    with pytest.raises(ConfigError, match="max_frames_per_s"):
        load_config(path)


def test_frame_pace_allows_a_burst_then_the_rate():
    from openlive.server.connection import FramePace

    pace = FramePace(10)
    assert [pace.wait(0.0) for _ in range(10)] == [0.0] * 10  # a second's worth at once
    assert pace.wait(0.0) == pytest.approx(0.1)  # then one every 1/rate
    assert pace.wait(0.1) == pytest.approx(0.1)
    assert pace.wait(5.0) == 0.0  # a quiet spell refills the bucket, up to the burst
    assert [pace.wait(5.0) for _ in range(9)] == [0.0] * 9
    assert pace.wait(5.0) > 0


@pytest.mark.parametrize("budget_s, most_per_pass", [(0.0, 1), (60.0, 50)])
async def test_frames_arriving_together_are_handled_over_several_passes_of_the_event_loop(budget_s, most_per_pass):
    from openlive.server.connection import Turnstile

    gate, handled, seen = Turnstile(budget_s), [0], []

    async def frame() -> None:  # one connection's frame, arrived at the same time as the others'
        await gate.enter()
        handled[0] += 1

    def tick() -> None:  # runs once per pass, as a timer or /healthz would get its turn
        seen.append(handled[0])
        if handled[0] < 50:
            asyncio.get_running_loop().call_soon(tick)

    asyncio.get_running_loop().call_soon(tick)
    await asyncio.gather(*(frame() for _ in range(50)))
    await asyncio.sleep(0)
    steps = [b - a for a, b in zip(seen, seen[1:])]
    assert handled[0] == 50 and max(steps) == most_per_pass, seen


def test_the_llm_prompt_cache_in_ram_is_bounded_by_the_config(tmp_path):
    # llama.cpp's own default (8 GiB) let the server grow with every conversation that lost its slot.
    from openlive.engines.llm.embedded import llama_params
    from openlive.engines.registry import build_llm

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    path = tmp_path / "c.toml"
    path.write_text(f'[llm.default]\nmodel = "{model}"\nprompt_cache_mib = 64\n')
    engine = build_llm(load_config(path).llms["default"], tmp_path)
    assert engine.prompt_cache_mib == 64
    assert llama_params(model, n_ctx=512, n_parallel=2, n_threads=1, prompt_cache_mib=64).cache_ram_mib == 64
    assert load_config(None).llms["default"].prompt_cache_mib == 512
