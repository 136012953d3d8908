"""Resumption, the context window and live updates in the session layer, with no sockets.

The session writes snapshots to a real SQLite store in a temp dir, and a second session restores
from them, as a second connection (or a second node) would.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from openlive import metrics
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.protocol import ProtocolError, parse_client_frame
from openlive.session.context import ContextPolicy, turns_to_drop
from openlive.session.live_session import LiveSession, Persistence
from openlive.session.resumption import REPLAY_MARGIN_S, ConsumedIndex, Snapshot
from openlive.store import open_store
from tests.support.scripts import ECHO_INSTRUCTION, RECALL_NAME

SCRIPT = RECALL_NAME + ECHO_INSTRUCTION


def ev(obj):
    return parse_client_frame(json.dumps(obj))


def user(text, complete=True):
    return ev({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": complete}})


@pytest.fixture
async def store(tmp_path):
    s = await open_store("sqlite", path=tmp_path / "state.sqlite3")
    yield s
    await s.aclose()


@pytest.fixture
def engine(tmp_path):
    script = tmp_path / "script.toml"
    script.write_text(SCRIPT)
    return ScriptedEngine("s", script)


async def open_session(engine, store=None, resumed=None, window=32768, owner="owner-1", **setup_extra):
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    setup = ev({"setup": {"model": "models/x", "generationConfig": {"responseModalities": ["TEXT"]}, **setup_extra}})
    persistence = Persistence(store, owner) if store is not None else None
    session = LiveSession(setup, llm=engine, send=send, session_id="abc", persistence=persistence, resumed=resumed,
                          context_window=window)
    await session.start()
    return session, sent


async def settle(session):
    for _ in range(200):
        await asyncio.sleep(0.005)
        if not session.busy and (session.checkpoints.task is None or session.checkpoints.task.done()):
            return


def text_of(sent):
    return "".join(p.get("text", "") for m in sent for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []))


def updates(sent):
    return [m["sessionResumptionUpdate"] for m in sent if "sessionResumptionUpdate" in m]


async def test_updates_carry_handles_at_quiet_points_and_say_unresumable_during_a_reply(engine, store):
    session, sent = await open_session(engine, store, sessionResumption={})
    await settle(session)
    assert updates(sent)[0]["resumable"] is True and updates(sent)[0]["newHandle"]
    await session.handle(user("My name is Zorblax."))
    await settle(session)
    ups = updates(sent)
    assert {"resumable": False} in ups  # while the reply ran
    # The new handle comes before the turnComplete that ends the turn it includes.
    handle_at = max(i for i, m in enumerate(sent) if m.get("sessionResumptionUpdate", {}).get("newHandle"))
    complete_at = max(i for i, m in enumerate(sent) if m.get("serverContent", {}).get("turnComplete"))
    assert handle_at < complete_at
    assert "lastConsumedClientMessageIndex" not in ups[-1]  # only in transparent mode


async def test_handles_go_out_in_the_order_of_the_state_they_keep(engine, store):
    """A slow first write (a busy store) must not send its older handle after a newer one."""
    put, first = store.put_snapshot, asyncio.Event()

    async def slow_first_put(handle, lineage, state, ttl_s):
        if not first.is_set():
            first.set()
            await asyncio.sleep(0.3)
        await put(handle, lineage, state, ttl_s)

    store.put_snapshot = slow_first_put
    session, sent = await open_session(engine, store, sessionResumption={})
    await first.wait()  # the handle from the start is being written, slowly
    await session.handle(user("My name is Zorblax."))
    await settle(session)
    for _ in range(100):
        await asyncio.sleep(0.01)
    # What each handle keeps, in the order they were sent: never less than the one before (a
    # client holding the last handle it got, when the store then fails, must not lose the turn).
    kept = [len(Snapshot.from_bytes(await store.get_snapshot(u["newHandle"])).history)
            for u in updates(sent) if u.get("newHandle")]
    assert kept == sorted(kept) and kept[-1] == 2, kept


async def test_restore_brings_back_history_instruction_and_tools(engine, store):
    tools = [{"functionDeclarations": [{"name": "lamp", "parameters": {"type": "object", "properties": {}}}]}]
    session, sent = await open_session(engine, store, sessionResumption={}, tools=tools,
                                       systemInstruction={"parts": [{"text": "Be brief."}]})
    await session.handle(user("My name is Zorblax."))
    await settle(session)
    await session.handle(ev({"contextUpdate": {"systemInstruction": {"parts": [{"text": "Be a pirate."}]}}}))
    await settle(session)
    handle = updates(sent)[-1]["newHandle"]
    await session.aclose()
    snapshot = Snapshot.from_bytes(await store.get_snapshot(handle))
    assert snapshot.owner == "owner-1" and snapshot.system_instruction == "Be a pirate."
    # The client resumes with the setup it first sent: the updated instruction carries on.
    resumed, sent2 = await open_session(engine, store, resumed=snapshot, sessionResumption={"handle": handle},
                                        tools=tools, systemInstruction={"parts": [{"text": "Be brief."}]})
    assert resumed.checkpoints.lineage == session.checkpoints.lineage
    assert [t.role for t in resumed.conversation.history] == ["user", "model"]
    assert "lamp" in resumed.conversation.tools.functions
    await resumed.handle(user("What is my name?"))
    await settle(resumed)
    assert text_of(sent2) == "Your name is Zorblax."
    # A resume that changes the instruction gets the new one.
    changed, _ = await open_session(engine, store, resumed=snapshot, sessionResumption={"handle": handle},
                                    systemInstruction={"parts": [{"text": "Be loud."}]})
    assert changed.conversation.system_instruction == "Be loud."
    assert not changed.conversation.tools  # and no tools: it changed those too


async def test_a_snapshot_whose_setup_this_version_refuses_still_resumes_its_history(engine, store):
    # Saved before issue 13's ranges: maxOutputTokens past 65,536 and a schema that is a list.
    session, sent = await open_session(engine, store, sessionResumption={})
    await session.handle(user("My name is Zorblax."))
    await settle(session)
    handle = updates(sent)[-1]["newHandle"]
    await session.aclose()
    snapshot = Snapshot.from_bytes(await store.get_snapshot(handle))
    snapshot.setup["generationConfig"]["maxOutputTokens"] = 10**9
    snapshot.tools = [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": [1]}]}]
    resumed, sent2 = await open_session(engine, store, resumed=snapshot, sessionResumption={"handle": handle},
                                        systemInstruction={"parts": [{"text": "Be brief."}]})
    assert resumed.conversation.system_instruction == "Be brief."
    assert not resumed.conversation.tools
    await resumed.handle(user("What is my name?"))
    await settle(resumed)
    assert text_of(sent2) == "Your name is Zorblax."


async def test_context_update_waits_for_the_reply_in_progress(engine):
    slow = ScriptedEngine("slow", token_delay_ms=20)
    session, sent = await open_session(slow, systemInstruction={"parts": [{"text": "Old."}]})
    await session.handle(user("one two three four five"))
    await asyncio.sleep(0.03)
    assert session.replying
    await session.handle(ev({"contextUpdate": {"systemInstruction": {"parts": [{"text": "New."}]}}}))
    assert session.conversation.system_instruction == "Old."  # not halfway through a reply
    await settle(session)
    session._start_reply()
    assert session.conversation.system_instruction == "New."
    await session.aclose()


def test_sliding_window_cuts_at_a_user_turn_and_keeps_the_last():
    roles = ["user", "model", "user", "model", "user"]
    tokens = [100, 100, 100, 100, 100]
    assert turns_to_drop(roles, tokens, 50, 250) == 4  # 550 > 250: drop to the last user turn
    assert turns_to_drop(roles, tokens, 0, 300) == 2  # drop 2 → 300, starts at a user turn
    assert turns_to_drop(roles, tokens, 0, 350) == 2  # dropping 1 would start at a model turn
    assert turns_to_drop(["user"], [900], 0, 10) == 0  # the turn being answered stays


def test_compression_defaults_and_bad_values():
    from openlive.protocol.messages import ContextWindowCompressionConfig as C

    assert ContextPolicy.from_setup(None, 1000) == ContextPolicy(1000, None, 1000)
    assert ContextPolicy.from_setup(C(sliding_window={}), 1000) == ContextPolicy(1000, 800, 400)
    assert ContextPolicy.from_setup(C(trigger_tokens=500), 1000) == ContextPolicy(1000, 500, 250)
    with pytest.raises(ProtocolError) as caught:
        ContextPolicy.from_setup(C(trigger_tokens=100, sliding_window={"target_tokens": 200}), 1000)
    assert caught.value.code == 1007


async def test_window_overflow_ends_the_session_and_compression_prevents_it(engine):
    filler = "word " * 60
    session, _ = await open_session(engine, window=300)
    for _ in range(6):
        await session.handle(user(filler))
        await settle(session)
    assert session.failure.done() and "exceeds the maximum number of tokens" in session.failure.result().reason
    compressed, sent = await open_session(engine, window=300, systemInstruction={"parts": [{"text": "Keep me."}]},
                                          contextWindowCompression={"triggerTokens": 250,
                                                                    "slidingWindow": {"targetTokens": 120}})
    compressions = lambda: metrics.REGISTRY.get_sample_value("openlive_context_compressions_total")  # noqa: E731
    before = compressions()
    for _ in range(12):
        await compressed.handle(user(filler))
        await settle(compressed)
    assert compressions() > before  # operators (and bench/soak.py) see it happen
    sent.clear()
    await compressed.handle(user("instruction?"))
    await settle(compressed)
    assert not compressed.failure.done()
    assert compressed.conversation.history[0].role == "user" and compressed.conversation.tokens <= 300
    assert text_of(sent).startswith("I was told: Keep me.")


def test_consumed_index_holds_back_speech_and_a_margin_of_silence():
    index = ConsumedIndex()
    assert index.value == 0
    index.message(1)
    assert index.value == 1
    for i in range(2, 18):  # 2 s of silence in 125 ms messages
        index.audio(i, 0.125, in_utterance=False)
    # The newest second of silence may hold the start of a word: it is not consumed yet.
    assert index.value == 17 - round(REPLAY_MARGIN_S / 0.125)
    before_speech = index.value
    for i in range(18, 30):
        index.audio(i, 0.125, in_utterance=True)
    assert index.value == before_speech  # an utterance in progress is not state yet
    index.message(30)  # even a text message after it does not move past the held audio
    assert index.value == before_speech
    index.utterance_taken()
    index.message(31)
    assert index.value == 31
