"""Run the real router as ``python main.py ...`` in a subprocess, for black-box tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``predicate`` every 10 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@contextlib.contextmanager
def router_process(
    args: list[str], env: dict[str, str], tmp_path: Path, http: httpx.Client, names: set[str]
) -> Iterator[tuple[str, Path, Path]]:
    """``python main.py ARGS --port P`` on a free port: (url, stdout path, stderr path).

    Ready when its /health lists exactly the providers ``names`` (not some other process's
    router); a port taken between choosing and binding it gets another try.  The process
    is stopped (terminate, then kill) when the block ends.
    """
    for attempt in range(3):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        out_path = tmp_path / f"stdout-{attempt}.log"
        err_path = tmp_path / f"stderr-{attempt}.log"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "main.py", *args, "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=err,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                if _ready(url, process, http, names):
                    yield url, out_path, err_path
                    return
            finally:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        if "already in use" not in err_path.read_text():
            raise AssertionError(f"the router did not start: {err_path.read_text()}")
    raise AssertionError("no free port for the router")


def _ready(url: str, process: subprocess.Popen[bytes], http: httpx.Client, names: set[str]) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            response = http.get(url + "/health")
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        providers = response.json().get("providers", {})
        listed = {row["name"] for rows in providers.values() for row in rows}
        assert listed == names, f"another server answers on {url}"
        return True
    raise AssertionError("the router did not start in time")
