"""The README's main job: `traingate demo` on a fresh directory, again, and Ctrl-C."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.api_support import free_port
from traingate._core.timeutil import now_micros, parse_instant
from traingate._facade import Traingate
from traingate._settings import Settings


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}


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
    _console_tokens_open_their_pages(first.stdout, tmp_path)
    valid = re.search(r"valid until (\S+);", first.stdout)
    assert valid, first.stdout
    # links outlive a coffee break: a week, not a blink
    assert parse_instant(valid.group(1)) - now_micros() > 6 * 86_400 * 1_000_000
    again = subprocess.run(
        command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stderr
    assert "0 events accepted" in again.stdout
    assert again.stdout.count("existing, verified") == 2


def _console_tokens_open_their_pages(printed: str, cwd: Path) -> None:
    """Issue 17, point 2: "start a build and watch it" needs an analyst, explain a privacy
    officer: the demo prints a token of each role, with the console pages it opens."""
    found = re.findall(r"^  (\w+) \(([^)]*)\): (tgk_\S+)$", printed, flags=re.M)
    assert [role for role, _, _ in found] == ["analyst", "privacy_officer"], printed
    pages = {role: names.split(", ") for role, names, _ in found}
    assert "Builds" in pages["analyst"] and "Explain" not in pages["analyst"]
    assert {"Explain", "Retention"} <= set(pages["privacy_officer"])
    assert "with the analyst token" in printed
    data = cwd / "traingate-data"
    settings = Settings(
        db_url=f"sqlite:///{data / 'traingate.sqlite'}", key_file=data / "keys.json"
    )
    with Traingate.open(settings) as tg:
        for role, _, token in found:
            assert tg.access.authenticate(token).role == role


def test_demo_serves_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "traingate", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed = []
        for line in process.stdout:
            printed.append(line)
            if line.startswith("Serving"):
                break
        login = re.search(r"(http://127\.0\.0\.1:\d+/login/\S+)", "".join(printed))
        assert login, "".join(printed)
        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                with browser.open(f"http://127.0.0.1:{port}/docs", timeout=2) as reply:
                    assert reply.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the demo server did not come up"
                time.sleep(0.5)
        # a printed login link signs the user in: the privacy center answers, no sign-in page
        with browser.open(login.group(1), timeout=10) as reply:
            page = reply.read().decode()
        assert "Please sign in" not in page
        assert "model training" in page
        # the printed analyst token starts and watches builds; the privacy officer's may not
        tokens = dict(re.findall(r"^  (\w+) \([^)]*\): (tgk_\S+)$", "".join(printed), re.M))
        for role, status in (("analyst", 200), ("privacy_officer", 403)):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/datasets",
                headers={"Authorization": f"Bearer {tokens[role]}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as reply:
                    got = reply.status
            except urllib.error.HTTPError as exc:
                got = exc.code
            assert got == status, role
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err
