"""Acceptance (issue 2): the README's first command installs and serves, on a fresh copy.

The command is read from the README itself and run verbatim in a copy of the repository with
its own new virtual environment, so the README cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from google import genai
from google.genai import types

from .conftest import REPO, ServerProcess, free_port, wait_healthy

pytestmark = pytest.mark.e2e


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, re.S)[:2]


def test_readme_opens_with_install_and_test_commands():
    install, tests = readme_commands()
    assert "pip install" in install and "openlive serve" in install
    assert tests == "bash scripts/test"
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()


async def test_readme_install_command_serves_on_a_fresh_copy(tmp_path, data_dir):
    install, _ = readme_commands()
    copy = tmp_path / "openlive"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).write_bytes((REPO / name).read_bytes())
    port = free_port()
    log_path = tmp_path / "serve.log"
    # The data dir with the already-prepared model keeps this to the install itself.
    env = {**os.environ, "OPENLIVE_PORT": str(port), "OPENLIVE_DATA_DIR": str(data_dir)}
    env.pop("VIRTUAL_ENV", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["bash", "-c", install], cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = ServerProcess(f"https://127.0.0.1:{port}", port, data_dir / "tls" / "cert.pem", process, log_path)
    try:
        wait_healthy(server, timeout=600)
        assert (copy / ".venv" / "bin" / "openlive").exists()
        client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))
        config = types.LiveConnectConfig(response_modalities=["TEXT"], max_output_tokens=16)
        async with client.aio.live.connect(model="gemini-live-2.5-flash", config=config) as session:
            await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="Hi!")]))
            text = "".join([m.text or "" async for m in session.receive()])
        assert text.strip()
        assert f"https://127.0.0.1:{port}" in server.log()  # the banner with the lines users need
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            time.sleep(0.5)
