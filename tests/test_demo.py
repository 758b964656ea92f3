"""The README's main job: `traingate demo` on a fresh directory, again, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_prepares_everything_and_is_safe_to_rerun(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "traingate", "demo", "--no-serve"]
    first = subprocess.run(
        command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert first.returncode == 0, first.stderr
    assert "0 rejected" in first.stdout
    assert first.stdout.count("built, verified") == 2
    for kind in ("consumer who opted in", "consumer without opt-in", "commercial account"):
        assert kind in first.stdout
    assert "/login/tgs_" in first.stdout and "/admin" in first.stdout and "/docs" in first.stdout
    again = subprocess.run(
        command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stderr
    assert "0 events accepted" in again.stdout
    assert again.stdout.count("existing, verified") == 2


def test_demo_serves_until_ctrl_c(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "traingate", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=2) as reply:
                    assert reply.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the demo server did not come up"
                time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Serving; press Ctrl-C to stop." in out
    assert "Traceback" not in err
