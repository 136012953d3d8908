"""Acceptance (issue 7): `openlive talk` as a user runs it, against a real server process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from openlive.server.tls import ensure_self_signed
from tests.support.wer import wer
from tests.support.audio import FIRST_SENTENCE_TEXT, first_sentence_16k, write_wav_16k

from .conftest import ServerProcess

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "data"
SCRIPT = 'token_delay_ms = 5\n\n[[reply]]\nmatch = "worst of times"\ntext = "You quoted Dickens. Well read!"\n'


@pytest.fixture(scope="module")
def server(start_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    script = tmp_path_factory.mktemp("talk") / "replies.toml"
    script.write_text(SCRIPT)
    return start_server(f'[llm.default]\nengine = "scripted"\nscript = "{script}"\n')


def talk(server: ServerProcess, *args: str, env: dict[str, str | None] | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "openlive", "talk", "--base-url", server.base_url, *args],
                          capture_output=True, text=True, timeout=60, input=stdin,
                          env={k: v for k, v in environment.items() if v is not None})


@pytest.mark.parametrize("pace", ["real-time", "fast"])
def test_headless_wav_in_wav_out(server, tmp_path, data_dir, pace):
    reply = tmp_path / "reply.wav"
    env = {"SSL_CERT_FILE": None}  # trust comes from --data-dir: the server's own cert on a loopback address
    question = write_wav_16k(tmp_path / "question.wav", first_sentence_16k())  # real speech, one sentence
    result = talk(server, "--input", str(question), "--output", str(reply), "--voice", "Kore",
                  "--data-dir", str(data_dir), *(["--fast"] if pace == "fast" else []), env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    you = re.search(r"^you: (.*)$", result.stdout, re.M)
    model = re.search(r"^model: (.*)$", result.stdout, re.M)
    assert you and wer(FIRST_SENTENCE_TEXT, you.group(1)) < 0.2, result.stdout
    assert model and model.group(1) == "You quoted Dickens. Well read!", result.stdout
    assert re.search(r"^latency: \d+ ms", result.stdout, re.M), result.stdout
    with wave.open(str(reply)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)
        seconds = wav.getnframes() / 24000
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert 1.0 < seconds < 6.0, seconds
    assert np.abs(samples).max() > 1000


def test_text_mode_reads_lines_and_streams_replies(server, data_dir):
    result = talk(server, "--text", "--data-dir", str(data_dir), stdin="hello there\nthe worst of times\n")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("model: ")]
    assert lines == ["model: You said: hello there", "model: You quoted Dickens. Well read!"], result.stdout
    assert result.stdout.count("latency: ") == 2


def test_an_untrusted_certificate_is_a_clear_error(server, tmp_path):
    other_cert, _ = ensure_self_signed(tmp_path / "other" / "tls")  # some other server's certificate
    result = talk(server, "--text", "--data-dir", str(tmp_path / "other"), env={"SSL_CERT_FILE": str(other_cert)},
                  stdin="hello\n")
    assert result.returncode == 1
    assert "not trusted" in result.stderr and "SSL_CERT_FILE" in result.stderr


def test_image_shows_the_model_a_picture_before_the_question(server, data_dir, tmp_path):
    from tests.support.images import sign

    picture = tmp_path / "sign.png"
    sign("EXIT 12").save(picture)
    result = talk(server, "--text", "--image", str(picture), "--data-dir", str(data_dir),
                  stdin="What does the sign say?\n")
    assert result.returncode == 0, result.stderr
    # The scripted model echoes what it read: the camera note of the picture, then the question.
    reply = result.stdout[result.stdout.index("model: "):]
    assert reply.startswith("model: You said: [camera] The frame shows the text: 'EXIT 12'."), result.stdout
    assert reply.index("[camera]") < reply.index("What does the sign say?"), result.stdout
