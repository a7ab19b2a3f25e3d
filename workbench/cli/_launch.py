"""How ``workbench app`` starts Streamlit: the command line and environment, built apart from running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.explore import STORE_ENV

APP_SCRIPT = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"


def app_script() -> Path:
    """The app's entry script (``app/streamlit_app.py`` of the source checkout)."""
    if not APP_SCRIPT.is_file():
        raise WorkbenchError(
            f"the Streamlit app is not at {APP_SCRIPT}; `workbench app` runs from a source checkout "
            "(pip install -e .)"
        )
    return APP_SCRIPT


def streamlit_command(
    store: str | os.PathLike[str], port: int, host: str = "127.0.0.1"
) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` that run the app headless on ``host:port`` reading ``store`` (via ``$WORKBENCH_STORE``)."""
    if not 0 < port < 65536:
        raise WorkbenchError(f"--port {port}: expected a TCP port between 1 and 65535")
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_script()),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    # The app imports the same workbench as this process, even when another copy is installed.
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, STORE_ENV: str(Path(store).expanduser().resolve()), "PYTHONPATH": path}
    return argv, env


def run_app(argv: list[str], env: dict[str, str]) -> int:
    """Run Streamlit as a child process until it exits; SIGTERM and Ctrl-C are passed on to it, so
    stopping ``workbench app`` never leaves a server behind. Returns the child's exit code."""
    child = subprocess.Popen(argv, env=env)

    def forward(signum: int, frame: Any) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # a second Ctrl-C before the handler was installed
                child.send_signal(signal.SIGINT)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
