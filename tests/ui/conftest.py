"""The web page's browser test: Debian's chromium driven by playwright, and `vstar ui` on a free port.

What the browser test needs is checked once, and a missing part fails the test with the command that
installs it (``make test`` installs all of it when run as root): the ``ui`` and ``dev`` extras (Gradio,
playwright's Python package) and the system browser at ``/usr/bin/chromium`` (no browser is downloaded).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Headless on a closed network: no GPU, no QUIC, and none of the browser's own background connections.
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_START_S = 90.0
LLM_VARIABLES = ("VSTAR_LLM_BASE_URL", "VSTAR_LLM_API_KEY", "OPENAI_API_KEY")  # the page suggests with the offline rules


def browser_test_problem() -> str | None:
    """What the browser test lacks, as the line that says how to install it; None when all is there."""
    missing = [name for name in ("gradio", "playwright") if importlib.util.find_spec(name) is None]
    if missing:
        return f"the browser test needs {' and '.join(missing)}: pip install -e '.[dev,ui]' (make test does)"
    if not CHROMIUM.is_file():
        return (f"the browser test drives Debian's chromium at {CHROMIUM}, which is missing: apt-get install -y "
                "chromium (as root; make test does it when it can)")
    return None


def pytest_report_header(config: pytest.Config) -> str:
    return f"vstar ui browser test: {browser_test_problem() or f'ready ({CHROMIUM})'}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def ui_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``vstar ui --model toy-shapes`` served on a free port (its cache in a temporary folder) until the tests end."""
    problem = browser_test_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in LLM_VARIABLES} | {
        "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
        "VSTAR_CACHE_DIR": str(tmp_path_factory.mktemp("ui-cache"))}
    log = tmp_path_factory.mktemp("ui-log") / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "vstar", "ui", "--model", "toy-shapes", "--port", str(port)],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"vstar ui exited with {server.returncode}:\n{log.read_text()}", pytrace=False)
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"vstar ui did not answer on {url} within {SERVER_START_S:g} s:\n{log.read_text()}",
                                pytrace=False)
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def browser(ui_url: str) -> Iterator[object]:
    """The system chromium, headless, with a fresh profile (playwright makes a temporary one per launch)."""
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS, headless=True)
        except Error as err:
            pytest.fail(f"{CHROMIUM} does not start ({str(err).splitlines()[0]}); reinstall it: apt-get install -y "
                        "--reinstall chromium", pytrace=False)
        yield chromium
        chromium.close()
