"""Test support: a real Lightkeeper node in a subprocess, the sample alerts, and polling."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Optional

import httpx

REPO = Path(__file__).resolve().parents[3]
DEFAULT_BIN = "/var/tmp/lk-bin/lightkeeper"


def data_dir() -> Path:
    """The shared sample data: ``$LIGHTKEEPER_DATA``, else ``shared/data`` beside the repo."""
    env = os.environ.get("LIGHTKEEPER_DATA")
    if env:
        return Path(env)
    for candidate in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "data"


DATA = data_dir()
LIGHTCURVE_DIR = DATA / "ztf" / "alerts" / "pitt-google-broker" / "lightcurve_ZTF21abiuvdk"
NIGHT_DIR = DATA / "ztf" / "alerts" / "pitt-google-broker" / "alerts-for-testing_20210901"
ZTF_BOOM = DATA / "ztf" / "alerts" / "boom" / "2695378462115010012.avro"
LSST_BOOM_DIR = DATA / "lsst" / "alerts" / "boom"

KEY = "ztf:ZTF21abiuvdk"


def lightcurve_files() -> List[Path]:
    """ZTF21abiuvdk's 22 alerts, in time order (their names are objectId.candid.night)."""
    return sorted(LIGHTCURVE_DIR.glob("*.avro"), key=lambda p: int(p.name.split(".")[1]))


def candid_of(path: Path) -> str:
    return path.name.split(".")[1]


def wait_until(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Calls ``check`` until it returns something truthy (returned) or raises nothing falsy past
    the deadline; exceptions count as 'not yet'. Fails with the last exception or value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - "not yet"
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """``lightkeeper serve`` on 127.0.0.1 with its own data directory."""

    LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")

    def __init__(self, binary: str, data: Optional[str] = None, listen: str = "127.0.0.1:0") -> None:
        self.binary = binary
        self._own_dir = data is None
        self.data = data or tempfile.mkdtemp(prefix="lk-pytest-")
        self.listen = listen
        self.url: Optional[str] = None
        self.proc: Optional[subprocess.Popen] = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.data, "node.log")

    def start(self, timeout: float = 30.0) -> "Node":
        log = open(self.log_path, "ab")
        # The node reads every LIGHTKEEPER_* variable as a setting and refuses unknown ones, so
        # the test's own (LIGHTKEEPER_BIN, LIGHTKEEPER_DATA) must not reach it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTKEEPER_")}
        env["LIGHTKEEPER_LOG"] = os.environ.get("LIGHTKEEPER_LOG", "warn")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", self.listen, "--data-dir", os.path.join(self.data, "d")],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        log.close()
        found = threading.Event()
        proc = self.proc

        def read_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:  # drained to the end, so the node never blocks on stdout
                m = self.LISTENING.search(line)
                if m and not found.is_set():
                    self.url = m.group(1)
                    found.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.02):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"lightkeeper serve did not start (exit {proc.returncode}); log:\n{tail}")
        wait_until(lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200, timeout, what=f"{self.url}/readyz")
        return self

    def restart(self, timeout: float = 30.0) -> "Node":
        """Starts the node again on the same address and data directory (after kill/stop)."""
        assert self.url, "restart() needs a node that started once"
        self.stop()
        self.listen = self.url[len("http://") :]
        return self.start(timeout)

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stops the process (SIGTERM, then SIGKILL after 10 s)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout:
            proc.stdout.close()

    def kill(self) -> None:
        """Kills the process at once (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stop()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data, ignore_errors=True)


class Answer503:
    """A tiny HTTP server answering every request with the API's 503 (a draining node)."""

    def __init__(self) -> None:
        body = json.dumps({"error": {"code": "unavailable", "message": "node is draining; retry later"}}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(503)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
