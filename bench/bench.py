"""Benchmark orchestrator for the LLM API router.  Start it through ``bash bench/run.sh``.

Topology: the systems under test (nginx reverse proxy, bare Python forwarders, the router) are
pinned to one core, the load generator (wrk / the open-loop generator) and the upstream (nginx
serving static, faithful OpenAI/Anthropic responses) to the other.  Every process started here
is stopped here, by its own process id.  See bench/README.md for what is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
FIXTURES = BENCH / "upstream"
WRK_LUA = BENCH / "wrk_post.lua"
DEFAULT_REPORT = BENCH / "RESULTS.md"
HOST = "127.0.0.1"

NOT_RUN = "not run"
# nginx's echo module (Debian: libnginx-mod-http-echo) paces the LLM-like streams.
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
PACED_EVENTS = 14  # events per paced stream (what a short LLM answer sends)
PACED_INTERVAL = 0.02  # seconds between two events of a paced stream
OTHER_CPU_WARN = 0.10  # rows during which other processes used more than this many cores


# --------------------------------------------------------------------------- scenario model


def sse_events(family: Family) -> list[str]:
    """The events of the family's static stream, without their blank separator lines."""
    text = (FIXTURES / family.sse_file).read_text()
    return [e for e in text.split("\n\n") if e.strip()]


def cut_chat(events: list[str]) -> list[str]:
    """OpenAI chat: the role chunk, content chunks, the finish chunk, a usage chunk, [DONE]."""
    first = json.loads(events[0].removeprefix("data: "))
    usage = {
        **{k: first[k] for k in ("id", "object", "created", "model", "system_fingerprint")},
        "choices": [],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
    }
    tail = [events[-2], "data: " + json.dumps(usage, separators=(",", ":")), events[-1]]
    return [events[0], *events[1 : PACED_EVENTS - len(tail)], *tail]


def cut_messages(events: list[str]) -> list[str]:
    """Anthropic: message_start, content_block_start, ping, deltas, content_block_stop,
    message_delta, message_stop."""
    tail = events[-3:]
    return [events[0], *events[1 : PACED_EVENTS - len(tail)], *tail]


def cut_responses(events: list[str]) -> list[str]:
    """OpenAI Responses: response.created, response.in_progress, output_item.added,
    content_part.added, text deltas, output_text.done, content_part.done, output_item.done,
    response.completed; sequence numbers and the final texts made to match what is kept."""
    tail = events[-4:]
    kept = [events[0], *events[1 : PACED_EVENTS - len(tail)], *tail]
    docs = [json.loads(e.split("data: ", 1)[1]) for e in kept]
    text = "".join(d["delta"] for d in docs if d["type"] == "response.output_text.delta")
    for i, doc in enumerate(docs):
        doc["sequence_number"] = i
        kind = doc["type"]
        if kind == "response.output_text.done":
            doc["text"] = text
        elif kind == "response.content_part.done":
            doc["part"]["text"] = text
        elif kind == "response.output_item.done":
            doc["item"]["content"][0]["text"] = text
        elif kind == "response.completed":
            doc["response"]["output"][0]["content"][0]["text"] = text
    return [f"event: {d['type']}\ndata: {json.dumps(d, separators=(',', ':'))}" for d in docs]


@dataclass(frozen=True)
class Family:
    """One API the bench drives: an endpoint of a provider family and its static answers.

    ``provider`` is the router config's family key: the router gets one provider list per
    provider family, and the same ``base_url`` serves every endpoint of it (the router appends
    the operation's path), so a new endpoint is only a new entry here and its fixtures.
    """

    name: str
    title: str
    provider: str  # openai | anthropic
    upstream_path: str  # appended to the upstream prefix (/up, /upstream-stream, ...)
    router_path: str
    headers: tuple[str, ...]
    body: dict[str, Any]
    json_file: str  # the non-streaming answer ("": only measured streaming)
    sse_file: str  # the streamed answer ("": the endpoint does not stream)
    limited_file: str
    response_headers: tuple[tuple[str, str], ...]
    answer: tuple[str, str]  # (key, value) a non-streaming JSON answer must carry
    stream_end: bytes  # what only a complete stream contains
    stream_fields: tuple[tuple[str, Any], ...] = ()  # body fields added when streaming
    paced_cut: Callable[[list[str]], list[str]] | None = None  # the paced stream's events
    baseline: str = ""  # the non-streaming row whose CPU per request paced rows subtract

    def base_url(self, port: int, prefix: str) -> str:
        """Provider base_url: the router appends /chat/completions, /responses, /embeddings
        (OpenAI) or /v1/messages (Anthropic)."""
        if self.provider == "openai":
            return f"http://{HOST}:{port}{prefix}/v1"
        return f"http://{HOST}:{port}{prefix}"


OPENAI_HEADERS = (
    ("x-request-id", "req_7f3c2a9b1e8d4c5fa0b6e2d9c1a3f5e7"),
    ("openai-organization", "org-bench"),
    ("openai-processing-ms", "312"),
    ("openai-version", "2020-10-01"),
    ("x-ratelimit-remaining-requests", "9999"),
)
OPENAI = Family(
    name="openai",
    title="OpenAI",
    provider="openai",
    upstream_path="/v1/chat/completions",
    router_path="/openai/v1/chat/completions",
    headers=("Authorization: Bearer x",),
    body={
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in one short sentence."},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
    },
    json_file="openai_chat.json",
    sse_file="openai_chat_stream.sse",
    limited_file="openai_rate_limit.json",
    response_headers=OPENAI_HEADERS,
    answer=("object", "chat.completion"),
    stream_end=b"data: [DONE]",
    stream_fields=(("stream_options", {"include_usage": True}),),
    paced_cut=cut_chat,
    baseline="openai-32",
)
ANTHROPIC = Family(
    name="anthropic",
    title="Anthropic",
    provider="anthropic",
    upstream_path="/v1/messages",
    router_path="/anthropic/v1/messages",
    headers=("x-api-key: x", "anthropic-version: 2023-06-01"),
    body={
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
    },
    json_file="anthropic_message.json",
    sse_file="anthropic_message_stream.sse",
    limited_file="anthropic_rate_limit.json",
    response_headers=(
        ("request-id", "req_011CPbench7f3c2a9b1e8d4c5f"),
        ("anthropic-organization-id", "0b5c3e2a-bench-4f1d-9c7e-000000000000"),
    ),
    answer=("type", "message"),
    stream_end=b"event: message_stop",
    paced_cut=cut_messages,
    baseline="anthropic-32",
)
OPENAI_RESPONSES = Family(
    name="openai-responses",
    title="OpenAI Responses",
    provider="openai",
    upstream_path="/v1/responses",
    router_path="/openai/v1/responses",
    headers=OPENAI.headers,
    body={
        "model": "gpt-4o-mini",
        "instructions": "You are a helpful assistant.",
        "input": "Say hello in one short sentence.",
        "max_output_tokens": 64,
        "temperature": 0.2,
    },
    json_file="",
    sse_file="openai_responses_stream.sse",
    limited_file="openai_rate_limit.json",
    response_headers=OPENAI_HEADERS,
    answer=("object", "response"),
    stream_end=b"event: response.completed",  # a Responses stream has no [DONE]
    paced_cut=cut_responses,
    baseline="openai-32",  # chat's per-request cost: there is no non-streaming Responses row
)
OPENAI_EMBEDDINGS = Family(
    name="openai-embeddings",
    title="OpenAI embeddings",
    provider="openai",
    upstream_path="/v1/embeddings",
    router_path="/openai/v1/embeddings",
    headers=OPENAI.headers,
    body={
        "model": "text-embedding-3-small",
        "input": "The food was delicious and the waiter was friendly.",
        "encoding_format": "float",
    },
    json_file="openai_embeddings.json",
    sse_file="",
    limited_file="openai_rate_limit.json",
    response_headers=OPENAI_HEADERS,
    answer=("object", "list"),
    stream_end=b"",
)
PROVIDERS = (OPENAI, ANTHROPIC)  # one provider list each in the router config
FAMILIES = (OPENAI, ANTHROPIC, OPENAI_RESPONSES, OPENAI_EMBEDDINGS)  # every API driven
PROVIDER_KEYS = {"openai": "sk-bench", "anthropic": "sk-ant-bench"}

# Upstream URL prefixes (nginx cannot look into the JSON body, so the stream flag is a prefix).
UP, STREAM, LIMITED, BACKUP, PACED = "/up", "/upstream-stream", "/limited", "/backup", "/paced"


def paced_events(family: Family) -> list[str]:
    """The PACED_EVENTS events of one paced stream, cut from the family's static stream."""
    assert family.paced_cut is not None, family.name
    out = family.paced_cut(sse_events(family))
    assert len(out) == PACED_EVENTS, len(out)
    return out


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    family: Family
    stream: bool
    connections: int
    group: str  # router config: healthy | stream | limited | paced
    kind: str = "closed"  # closed (wrk) | open (fixed rate) | fallback | paced (wrk)

    @property
    def prefix(self) -> str:
        if self.kind == "paced":
            return PACED
        return STREAM if self.stream else UP


def paced(family: Family, connections: int) -> Scenario:
    return Scenario(
        f"paced-{family.name}-{connections}",
        f"{family.title} paced streams ({PACED_EVENTS} events, "
        f"{PACED_INTERVAL * 1000:g} ms apart), {connections:,} concurrent streams",
        family,
        True,
        connections,
        "paced",
        kind="paced",
    )


SCENARIOS = (
    Scenario("openai-32", "OpenAI non-streaming, 32 connections", OPENAI, False, 32, "healthy"),
    Scenario("openai-128", "OpenAI non-streaming, 128 connections", OPENAI, False, 128, "healthy"),
    Scenario(
        "anthropic-32", "Anthropic non-streaming, 32 connections", ANTHROPIC, False, 32, "healthy"
    ),
    Scenario(
        "openloop-200", "OpenAI non-streaming, open loop", OPENAI, False, 0, "healthy", kind="open"
    ),
    Scenario("openai-stream-32", "OpenAI streaming, 32 connections", OPENAI, True, 32, "stream"),
    Scenario(
        "anthropic-stream-32", "Anthropic streaming, 32 connections", ANTHROPIC, True, 32, "stream"
    ),
    Scenario(
        "fallback",
        "Primary always 429, backup healthy (OpenAI non-streaming, 32 connections)",
        OPENAI,
        False,
        32,
        "limited",
        kind="fallback",
    ),
    Scenario(
        "openai-responses-stream-32",
        "OpenAI Responses streaming, 32 connections",
        OPENAI_RESPONSES,
        True,
        32,
        "stream",
    ),
    Scenario(
        "openai-embeddings-32",
        "OpenAI embeddings (non-streaming), 32 connections",
        OPENAI_EMBEDDINGS,
        False,
        32,
        "healthy",
    ),
    *(paced(fam, n) for fam in FAMILIES if fam.paced_cut for n in (64, 256, 1024)),
)
EXTRA_STEPS = ("startup",)


@dataclass(frozen=True)
class Variant:
    """A bare forwarder: ``bench/bare_forwarder.py --server SERVER --client CLIENT``."""

    name: str  # the --clients value; the system is bare-<name>
    server: str  # uvicorn (ASGI, uvloop + httptools) | granian (RSGI, uvloop, 1 worker process)
    client: str  # aiohttp | httpx | httpx2 | pyreqwest

    @property
    def system(self) -> str:
        return f"bare-{self.name}"

    @property
    def packages(self) -> tuple[str, str]:
        return self.server, self.client


# Default order; the first selected one is the reference for router/bare ratios (the router
# itself runs on uvicorn + aiohttp).  The position here fixes each variant's port.
VARIANTS = {
    v.name: v
    for v in (
        Variant("aiohttp", "uvicorn", "aiohttp"),
        Variant("httpx2", "uvicorn", "httpx2"),
        Variant("pyreqwest", "uvicorn", "pyreqwest"),
        Variant("granian-aiohttp", "granian", "aiohttp"),
        Variant("granian-pyreqwest", "granian", "pyreqwest"),
        Variant("httpx", "uvicorn", "httpx"),
    )
}


@dataclass
class Settings:
    duration: int
    warmup: int
    open_rate: float
    open_duration: float
    open_warmup: float
    startup_runs: int
    sut_cpu: int
    load_cpu: int
    port_base: int
    variants: tuple[str, ...]  # names in VARIANTS, in the order given by --clients
    only: tuple[str, ...]
    quick: bool
    report: Path | None = None

    def port(self, system: str) -> int:
        offsets = {"upstream": 1, "nginx-proxy": 2, "router": 3}
        offsets.update({v.system: 4 + i for i, v in enumerate(VARIANTS.values())})
        return self.port_base + offsets[system]

    def wants(self, step: str) -> bool:
        return not self.only or step in self.only

    def bare_systems(self) -> list[str]:
        return [VARIANTS[name].system for name in self.variants]


# --------------------------------------------------------------------------- processes


class Proc:
    """A child process in its own session, pinned to a CPU; stopped by its process group id."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        cpu: int,
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(
            ["taskset", "-c", str(cpu), *argv],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = time.perf_counter()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal the group (server and workers: nginx, granian), wait for the parent, then
        SIGKILL whatever is left: the group, and by PID any descendant that left it."""
        descendants = [(p, start_ticks(p)) for p in process_tree(self.pid)[1:]]
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        # anything left in the group (e.g. worker processes of a killed parent)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid, start in descendants:  # same PID and start time: still the same process
            if start is not None and start_ticks(pid) == start:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._log_file.close()

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log.read_text(errors="replace").strip().splitlines()
            return "\n".join(text[-lines:])
        return ""


def process_tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in task.read_text().split():
                out.extend(process_tree(int(child)))
    return out


def start_ticks(pid: int) -> int | None:
    """Start time of a live (non-zombie) process in clock ticks after boot; None if gone."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            return int(fields[19])
    return None


def memory_kib(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS summed over the process and its descendants."""
    total = {"VmHWM": 0, "VmRSS": 0, "processes": 0}
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    total[key] += int(value.split()[0])
            total["processes"] += 1
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU-seconds summed over all CPUs since boot, from /proc/stat.

    busy is user + nice + system only: irq/softirq time (loopback packet processing for the
    bench's own traffic) belongs to no process and would otherwise count as "other".
    """
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(x) for x in first[1:9])
    return (user + nice + system) / CLK_TCK, steal / CLK_TCK


def tree_cpu(pid: int) -> float:
    """CPU-seconds (user + system) used so far by a process and its descendants."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def http_call(
    port: int, method: str, path: str, body: bytes | None = None, headers: tuple[str, ...] = ()
) -> tuple[int, bytes, dict[str, str]]:
    """One request on a fresh connection: (status, body, lower-cased response headers)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        for h in headers:
            name, _, value = h.partition(":")
            hdrs[name.strip()] = value.strip()
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def wait_http(proc: Proc, port: int, path: str, timeout: float, want: int | None = 200) -> float:
    """Seconds from the process spawn to the first answer (``want`` status, or any if None)."""
    deadline = proc.started + timeout
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with code {proc.popen.returncode}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _, _ = http_call(port, "GET", path)
            if want is None or status == want:
                return time.perf_counter() - proc.started
        time.sleep(0.005)
    raise RuntimeError(f"{proc.name}: no {want or 'HTTP'} answer on {path} within {timeout:.0f}s")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


# --------------------------------------------------------------------------- nginx configs


def _nginx_str(text: str) -> str:
    if "'" in text or "$" in text or "\\" in text:
        raise ValueError("fixture unsuitable for an nginx string literal")
    return "'" + text + "'"


def _nginx_common(run_dir: Path, name: str) -> tuple[str, str]:
    """(main context, shared http-context directives) for one nginx instance of this run."""
    tmp = run_dir / "nginx" / f"{name}-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\nworker_rlimit_nofile 16384;\ndaemon off;\n"
        f"master_process on;\npid {run_dir}/nginx/{name}.pid;\n"
        f"error_log {run_dir}/nginx/{name}-error.log warn;\n"
        "events { worker_connections 8192; multi_accept on; }\n"
    ), (
        f"    client_body_temp_path {tmp}/body;\n    proxy_temp_path {tmp}/proxy;\n"
        f"    fastcgi_temp_path {tmp}/fastcgi;\n    uwsgi_temp_path {tmp}/uwsgi;\n"
        f"    scgi_temp_path {tmp}/scgi;\n"
        "    access_log off;\n    server_tokens off;\n    sendfile on;\n    tcp_nodelay on;\n"
        "    keepalive_requests 10000000;\n    keepalive_timeout 300s;\n"
        "    client_max_body_size 16m;\n    client_body_buffer_size 64k;\n"
    )


def _nginx_echo(text: str) -> str:
    """``text`` as a single-quoted nginx string for ``echo`` (which expands ``$``)."""
    if "$" in text:
        raise ValueError("fixture unsuitable for echo: it would expand '$'")
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return "'" + escaped + "'"


def paced_location(family: Family) -> str:
    """An nginx location answering with a paced stream: one event every PACED_INTERVAL."""
    lines = [
        f"        location = {PACED}{family.upstream_path} {{",
        "            default_type text/event-stream;",
        "            add_header cache-control no-cache;",
        *(f"            add_header {name} {value};" for name, value in family.response_headers),
        "            echo_read_request_body;",
    ]
    for i, event in enumerate(paced_events(family)):
        if i:
            lines.append(f"            echo_sleep {PACED_INTERVAL};")
        lines.append(f"            echo -n {_nginx_echo(event + chr(10) * 2)}; echo_flush;")
    lines.append("        }")
    return "\n".join(lines)


def upstream_conf(run_dir: Path, port: int) -> str:
    head, http_common = _nginx_common(run_dir, "upstream")
    if ECHO_MODULE.exists():
        head = f"load_module {ECHO_MODULE};\n" + head
    logs = run_dir / "nginx"
    locations: list[str] = []

    def static(
        path: str, file: str, ctype: str, headers: tuple[tuple[str, str], ...], log: str
    ) -> str:
        lines = [f"        location = {path} {{", f"            alias {FIXTURES / file};"]
        lines.append(f"            default_type {ctype};")
        # nginx's static handler refuses POST with 405: re-enter as GET and answer 200
        lines.append("            error_page 405 =200 $uri;")
        for name, value in headers:
            lines.append(f"            add_header {name} {value};")
        if ctype == "text/event-stream":
            # a no-op substitution drops Content-Length: streamed chunked, like the real APIs
            lines += [
                "            add_header cache-control no-cache;",
                "            sub_filter_types text/event-stream;",
                "            sub_filter '@@never@@' '';",
            ]
        lines.append(f"            {log}")
        lines.append("        }")
        return "\n".join(lines)

    for fam in FAMILIES:
        if fam.json_file:
            locations.append(
                static(
                    UP + fam.upstream_path,
                    fam.json_file,
                    "application/json",
                    fam.response_headers,
                    "",
                )
            )
            locations.append(
                static(
                    BACKUP + fam.upstream_path,
                    fam.json_file,
                    "application/json",
                    fam.response_headers,
                    f"access_log {logs}/backup.log hits;",
                )
            )
        if fam.sse_file:
            locations.append(
                static(
                    STREAM + fam.upstream_path,
                    fam.sse_file,
                    "text/event-stream",
                    fam.response_headers,
                    "",
                )
            )
        body = json.dumps(json.loads((FIXTURES / fam.limited_file).read_text()))
        locations.append(
            "\n".join(
                [
                    f"        location = {LIMITED}{fam.upstream_path} {{",
                    "            default_type application/json;",
                    "            add_header retry-after 30 always;",
                    f"            access_log {logs}/limited.log hits;",
                    f"            return 429 {_nginx_str(body)};",
                    "        }",
                ]
            )
        )
        if ECHO_MODULE.exists() and fam.paced_cut is not None:
            locations.append(paced_location(fam))
    return (
        head
        + "http {\n"
        + http_common
        + "    etag off;\n    log_format hits '$msec $status $request_uri';\n"
        + f"    server {{\n        listen {HOST}:{port} backlog=4096;\n"
        + "\n".join(locations)
        + "\n        location / { return 404; }\n    }\n}\n"
    )


def proxy_conf(run_dir: Path, port: int, upstream_port: int) -> str:
    head, http_common = _nginx_common(run_dir, "proxy")
    proxy = (
        "            proxy_pass http://llm_upstream;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
    )
    return (
        head
        + "http {\n"
        + http_common
        + f"    upstream llm_upstream {{\n        server {HOST}:{upstream_port};\n"
        + "        keepalive 512;\n        keepalive_requests 10000000;\n"
        + "        keepalive_timeout 300s;\n    }\n"
        + f"    server {{\n        listen {HOST}:{port} backlog=4096;\n"
        + "        location / {\n"
        + proxy
        + "        }\n"
        + "".join(
            f"        location {prefix}/ {{\n"
            + proxy
            + "            proxy_buffering off;\n            proxy_cache off;\n"
            + "        }\n"
            for prefix in (STREAM, PACED)
        )
        + "    }\n}\n"
    )


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    system: str
    status: str = "ok"  # ok | not run | error
    reason: str = ""
    rps: float = 0.0
    p50: float = 0.0  # milliseconds
    p90: float = 0.0
    p99: float = 0.0
    p999: float = 0.0
    requests: int = 0
    non_2xx: int = 0
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def nginx_version() -> str:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with contextlib.suppress(OSError):
        out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
        text = (out.stderr or out.stdout).strip()
        return text.removeprefix("nginx version: ").removeprefix("nginx/")
    return "?"


def wrk_version() -> str:
    with contextlib.suppress(OSError):
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        first = (out.stdout or out.stderr).strip().splitlines()
        if first:
            return first[0].split(" [")[0].removeprefix("wrk ")
    return "?"


def git_commit() -> str:
    def git(*a: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD") or "no commit yet"
    dirty = git("status", "--porcelain", "--", "llm_api_router", "main.py")
    return commit + (" (+ uncommitted changes)" if dirty else "")


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def pkg_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------- the run


class Bench:
    def __init__(self, settings: Settings, argv: list[str], run_dir: Path, report: Path) -> None:
        self.s = settings
        self.argv = argv
        self.run_dir = run_dir
        self.report = report
        self.procs: list[Proc] = []
        self.infra: list[Proc] = []  # the two nginx instances
        self.nginx: dict[str, Proc] = {}  # "upstream", "proxy"
        self.current_sut: Proc | None = None
        self.results: dict[str, dict[str, Row]] = {}
        self.open_results: dict[str, Row] = {}
        self.memory: dict[str, dict[str, dict[str, Any]]] = {}
        self.startup: dict[str, Any] = {}
        self.fallback: dict[str, Any] = {}
        self.router_status: dict[str, str] = {}
        self.notes: list[str] = []
        self.started_at = dt.datetime.now(dt.UTC)
        self.python = str(REPO / ".venv" / "bin" / "python")
        if not Path(self.python).exists():
            self.python = sys.executable
        self.bodies: dict[tuple[str, bool], Path] = {}
        self.loadavg_start = loadavg()
        self.loadavg_end = ""

    # ---- helpers

    def log(self, msg: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {msg}", flush=True)

    def spawn(
        self, name: str, argv: list[str], cpu: int, env: dict[str, str] | None = None
    ) -> Proc:
        proc = Proc(name, argv, cpu, self.run_dir / "logs" / f"{name}.log", env)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)

    def body_file(self, family: Family, stream: bool) -> Path:
        key = (family.name, stream)
        if key not in self.bodies:
            body = dict(family.body)
            if stream:
                body["stream"] = True
                body.update(family.stream_fields)
            path = self.run_dir / "bodies" / f"{family.name}{'-stream' if stream else ''}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(body, separators=(",", ":")))
            self.bodies[key] = path
        return self.bodies[key]

    def target(self, scenario: Scenario, system: str) -> tuple[int, str]:
        if system == "direct":
            return self.s.port("upstream"), scenario.prefix + scenario.family.upstream_path
        if system == "router":
            return self.s.port("router"), scenario.family.router_path
        return self.s.port(system), scenario.prefix + scenario.family.upstream_path

    def closed_systems(self) -> list[str]:
        return ["direct", "nginx-proxy", *self.s.bare_systems(), "router"]

    def paced_systems(self) -> list[str]:
        """Paced rows: the C proxy, the reference bare forwarder (the router's stack), router."""
        return ["direct", "nginx-proxy", *self.s.bare_systems()[:1], "router"]

    # ---- infrastructure

    def start_infra(self) -> None:
        for name in ("upstream", "nginx-proxy", "router", *self.s.bare_systems()):
            if not port_free(self.s.port(name)):
                raise RuntimeError(f"port {self.s.port(name)} ({name}) is in use; try --port-base")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        ndir = self.run_dir / "nginx"
        ndir.mkdir(parents=True, exist_ok=True)
        for name, conf, cpu in (
            ("upstream", upstream_conf(self.run_dir, self.s.port("upstream")), self.s.load_cpu),
            (
                "proxy",
                proxy_conf(self.run_dir, self.s.port("nginx-proxy"), self.s.port("upstream")),
                self.s.sut_cpu,
            ),
        ):
            path = ndir / f"{name}.conf"
            path.write_text(conf)
            check = subprocess.run(
                [nginx, "-t", "-q", "-p", str(ndir), "-c", str(path), "-e", str(ndir / "t.log")],
                capture_output=True,
                text=True,
            )
            if check.returncode != 0:
                raise RuntimeError(f"nginx -t {path}: {check.stderr.strip()}")
            proc = self.spawn(
                f"nginx-{name}",
                [nginx, "-p", str(ndir), "-c", str(path), "-e", str(ndir / f"{name}-error.log")],
                cpu,
            )
            self.infra.append(proc)
            self.nginx[name] = proc
            port = self.s.port("upstream" if name == "upstream" else "nginx-proxy")
            wait_http(proc, port, "/", 10, want=None)
            pid_file = ndir / f"{name}.pid"
            if pid_file.exists() and int(pid_file.read_text().split()[0]) != proc.pid:
                raise RuntimeError(f"nginx {name}: pid file does not match the spawned pid")

    def router_config(self, group: str) -> Path:
        up = self.s.port("upstream")
        cfg: dict[str, list[dict[str, Any]]] = {}
        for fam in PROVIDERS:
            key = PROVIDER_KEYS[fam.provider]

            def provider(
                name: str, prio: int, prefix: str, fam: Family = fam, key: str = key
            ) -> Any:
                return {
                    "name": name,
                    "api_key": key,
                    "priority": prio,
                    "base_url": fam.base_url(up, prefix),
                    "timeout": 30,
                    "max_retries": 0,
                }

            if group == "limited":
                cfg[fam.provider] = [
                    provider("primary", 1, LIMITED),
                    provider("backup", 2, BACKUP),
                ]
            else:
                prefix = {"stream": STREAM, "paced": PACED}.get(group, UP)
                cfg[fam.provider] = [provider("primary", 1, prefix)]
        path = self.run_dir / f"router-{group}.json"
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        return path

    def router_argv(self, config: Path) -> list[str]:
        return [
            self.python,
            "main.py",
            "--config",
            str(config),
            "--host",
            HOST,
            "--port",
            str(self.s.port("router")),
            "--log-level",
            "warning",
        ]

    def router_env(self) -> dict[str, str]:
        return {**os.environ, "LLM_ROUTER_BENCH": "1", "PYTHONUNBUFFERED": "1"}

    def bare_argv(self, name: str) -> list[str]:
        variant = VARIANTS[name]
        upstream = f"http://{HOST}:{self.s.port('upstream')}"
        script = str(BENCH / "bare_forwarder.py")
        return [
            self.python,
            script,
            "--server",
            variant.server,
            "--client",
            variant.client,
            "--port",
            str(self.s.port(variant.system)),
            "--upstream",
            upstream,
            "--pool",
            "4096",  # never the limit: the router's pool has none either
        ]

    def start_sut(self, scenario: Scenario, system: str) -> tuple[Proc | None, str]:
        """A fresh process of a Python system under test, or (None, why it is not run)."""
        name = f"{system}-{scenario.name}"
        if system.startswith("bare-"):
            argv = self.bare_argv(system.removeprefix("bare-"))
            proc = self.spawn(name, argv, self.s.sut_cpu)
        else:
            group = scenario.group
            if self.router_status.get(group, "ok") != "ok":
                return None, self.router_status[group]
            if not (REPO / "main.py").exists():
                self.router_status[group] = "main.py does not exist yet"
                return None, self.router_status[group]
            argv = self.router_argv(self.router_config(group))
            proc = self.spawn(name, argv, self.s.sut_cpu, self.router_env())
        try:
            wait_http(proc, self.s.port(system), "/health", 30)
        except RuntimeError as exc:
            tail = proc.log_tail(8).replace("\n", " / ").replace("|", "/")
            self.stop(proc)
            reason = f"failed to start: {exc}" + (f"; log tail: {tail}" if tail else "")
            if system == "router":
                self.router_status[scenario.group] = reason
            self.log(f"  {system}: {reason}")
            return None, reason
        if system == "router":
            self.router_status[scenario.group] = "ok"
        return proc, ""

    # ---- measurements

    def preflight(self, scenario: Scenario, port: int, path: str) -> str:
        """Empty string when one request through this system gives a faithful answer."""
        body = self.body_file(scenario.family, scenario.stream).read_bytes()
        try:
            status, data, hdrs = http_call(port, "POST", path, body, scenario.family.headers)
        except (OSError, http.client.HTTPException) as exc:
            return f"preflight request failed: {exc!r}"
        framing = ", ".join(
            f"{k}: {hdrs[k]}"
            for k in ("content-type", "content-length", "transfer-encoding")
            if k in hdrs
        )
        text = data[:160].decode(errors="replace").replace("\n", " ").replace("|", "/")
        snippet = f"[{framing}; {len(data)} body bytes] {text}".strip()
        if status != 200:
            return f"preflight HTTP {status}: {snippet}"
        if scenario.stream:
            events = data.count(b"data:")
            if scenario.family.stream_end not in data or events < (
                PACED_EVENTS if scenario.kind == "paced" else 15
            ):
                return f"preflight stream incomplete ({events} data lines): {snippet}"
            return ""
        try:
            doc = json.loads(data)
        except ValueError:
            return f"preflight body is not JSON: {snippet}"
        key, value = scenario.family.answer
        good = isinstance(doc, dict) and doc.get(key) == value
        return "" if good else f"preflight unexpected body: {snippet}"

    def wrk(
        self,
        url: str,
        conns: int,
        seconds: int,
        body: Path,
        headers: tuple[str, ...],
        midway: Callable[[], None] | None = None,
    ) -> Any:
        """Run wrk; ``midway()`` is called once, half-way through the run."""
        argv = [
            "taskset",
            "-c",
            str(self.s.load_cpu),
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(WRK_LUA),
            url,
        ]
        env = {**os.environ, "WRK_BODY_FILE": str(body), "WRK_HEADERS": "|".join(headers)}
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        ) as wrk:
            try:
                if midway is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        wrk.wait(seconds / 2)
                    midway()
                stdout, stderr = wrk.communicate(timeout=seconds + 60)
            except BaseException:
                wrk.kill()
                wrk.wait()
                raise
        for line in stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                return json.loads(line.removeprefix("BENCH_JSON ")), stdout + stderr
        raise RuntimeError(f"wrk printed no summary: {stdout[-300:]} {stderr[-300:]}")

    def sut_proc(self, system: str) -> Proc | None:
        """The process (tree) whose CPU a row of ``system`` measures; None for direct."""
        if system == "nginx-proxy":
            return self.nginx.get("proxy")
        if system == "direct":
            return None
        return self.current_sut

    def checked_row(self, scenario: Scenario, system: str) -> tuple[Row, int, str]:
        """A new row for ``system`` and its target; an ``error`` row if its answer is wrong."""
        port, path = self.target(scenario, system)
        row = Row(system)
        problem = self.preflight(scenario, port, path)
        if problem:
            row.status, row.reason = "error", problem
            self.log(f"  {system}: {problem}")
        return row, port, path

    def closed_loop(self, scenario: Scenario, system: str) -> Row:
        row, port, path = self.checked_row(scenario, system)
        if row.status == "error":
            return row
        url = f"http://{HOST}:{port}{path}"
        body = self.body_file(scenario.family, scenario.stream)
        raw_dir = self.run_dir / "wrk"
        raw_dir.mkdir(exist_ok=True)
        hdrs = scenario.family.headers
        if self.s.warmup > 0:
            _, text = self.wrk(url, scenario.connections, self.s.warmup, body, hdrs)
            (raw_dir / f"{scenario.name}--{system}--warmup.txt").write_text(text)
        before = self.hit_counts()
        sut, upstream = self.sut_proc(system), self.nginx["upstream"]
        midway: dict[str, Any] = {}

        def sample() -> None:  # the SUT's memory with every connection's stream open
            if sut is not None:
                midway["rss_kib"] = memory_kib(sut.pid)["VmRSS"]
                midway["open_fds"] = len(list(Path(f"/proc/{sut.pid}/fd").glob("*")))

        cpu = self.cpu_snapshot()
        sut_cpu0 = tree_cpu(sut.pid) if sut else 0.0
        up_cpu0, t0 = tree_cpu(upstream.pid), time.perf_counter()
        summary, text = self.wrk(
            url,
            scenario.connections,
            self.s.duration,
            body,
            hdrs,
            sample if scenario.kind == "paced" else None,
        )
        wall = time.perf_counter() - t0
        sut_cpu = tree_cpu(sut.pid) - sut_cpu0 if sut else None
        up_cpu = tree_cpu(upstream.pid) - up_cpu0
        noise = self.noise(cpu)
        after = self.hit_counts()
        (raw_dir / f"{scenario.name}--{system}.txt").write_text(text)
        secs = summary["duration_us"] / 1e6
        row.requests = summary["requests"]
        row.rps = row.requests / secs if secs else 0.0
        row.p50, row.p90 = summary["p50_us"] / 1000, summary["p90_us"] / 1000
        row.p99, row.p999 = summary["p99_us"] / 1000, summary["p999_us"] / 1000
        row.non_2xx = summary["status_errors"]
        row.errors = sum(
            summary[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        )
        row.extra = {
            "wrk": summary,
            "hits": {k: after[k] - before[k] for k in after},
            "upstream_cores": up_cpu / wall,
            **midway,
            **noise,
        }
        if sut_cpu is not None:
            row.extra["sut_cores"] = sut_cpu / wall
            # CPU per completed request; wrk counts a request when its last byte arrived.
            row.extra["cpu_us_per_request"] = 1e6 * sut_cpu / max(row.requests, 1)
        cpu_text = f"  CPU {row.extra.get('sut_cores', 0):.0%} (upstream {up_cpu / wall:.0%})"
        self.log(
            f"  {system:<22} {row.rps:>9,.0f} req/s  p50 {row.p50:7.2f} ms  p99 {row.p99:7.2f} ms"
            f"  non-2xx {row.non_2xx}  errors {row.errors}{cpu_text}"
            f"  other CPU {noise['other_cores']:.0%}"
        )
        return row

    def open_loop(self, scenario: Scenario, system: str) -> Row:
        row, port, path = self.checked_row(scenario, system)
        if row.status == "error":
            return row
        argv = [
            "taskset",
            "-c",
            str(self.s.load_cpu),
            self.python,
            str(BENCH / "openloop.py"),
            "--url",
            f"http://{HOST}:{port}{path}",
            "--body-file",
            str(self.body_file(scenario.family, scenario.stream)),
            "--rate",
            str(self.s.open_rate),
            "--duration",
            str(self.s.open_duration),
            "--warmup",
            str(self.s.open_warmup),
        ]
        for h in scenario.family.headers:
            argv += ["-H", h]
        limit = self.s.open_duration + self.s.open_warmup + 60
        cpu = self.cpu_snapshot()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
        noise = self.noise(cpu)
        (self.run_dir / "openloop").mkdir(exist_ok=True)
        (self.run_dir / "openloop" / f"{system}.json").write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            row.status, row.reason = "error", f"generator failed: {out.stderr.strip()[-200:]}"
            return row
        res = json.loads(out.stdout)
        lat = res["latency_ms"]
        row.rps, row.requests = res["achieved_rate"], res["ok"]
        row.p50, row.p90, row.p99, row.p999 = lat["p50"], lat["p90"], lat["p99"], lat["p999"]
        row.non_2xx, row.errors = res["non_2xx"], res["errors"]
        row.extra = {**res, **noise}
        self.log(
            f"  {system:<22} {row.rps:>7.1f} req/s  p50 {row.p50:6.2f}  p90 {row.p90:6.2f}"
            f"  p99 {row.p99:6.2f} ms  (send lag p99 {res['send_lag_ms']['p99']:.2f} ms)"
            f"  other CPU {noise['other_cores']:.0%}"
        )
        return row

    def cpu_snapshot(self) -> tuple[float, float, float, float]:
        """(wall, machine busy, machine steal, CPU of everything this bench started) seconds."""
        busy, steal = machine_cpu()
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        ours += sum(tree_cpu(p.pid) for p in self.infra)
        if self.current_sut is not None:
            ours += tree_cpu(self.current_sut.pid)
        return time.perf_counter(), busy, steal, ours

    def noise(self, before: tuple[float, float, float, float]) -> dict[str, float]:
        """Cores used by processes this bench did not start (and VM steal) since ``before``."""
        after = self.cpu_snapshot()
        wall = max(after[0] - before[0], 1e-9)
        other = (after[1] - before[1]) - (after[3] - before[3])
        return {"other_cores": max(other, 0.0) / wall, "steal_cores": (after[2] - before[2]) / wall}

    def hit_counts(self) -> dict[str, int]:
        counts = {}
        for name in ("limited", "backup"):
            path = self.run_dir / "nginx" / f"{name}.log"
            try:
                with path.open("rb") as f:
                    counts[name] = sum(1 for _ in f)
            except OSError:
                counts[name] = 0
        return counts

    def run_scenario(self, scenario: Scenario) -> None:
        self.log(f"scenario {scenario.name}: {scenario.title}")
        rows: dict[str, Row] = {}
        if scenario.kind == "fallback":
            systems = ["router"]
        elif scenario.kind == "paced":
            systems = self.paced_systems()
            problem = self.paced_problem(scenario)
            if problem:
                self.log(f"  not run: {problem}")
                self.results[scenario.name] = {s: Row(s, NOT_RUN, problem) for s in systems}
                return
        else:
            systems = self.closed_systems()
        measure = self.open_loop if scenario.kind == "open" else self.closed_loop
        for system in systems:
            if system in ("direct", "nginx-proxy"):
                rows[system] = measure(scenario, system)
                continue
            first_hits = self.hit_counts()
            proc, reason = self.start_sut(scenario, system)
            if proc is None:
                rows[system] = Row(system, NOT_RUN, reason)
                continue
            self.current_sut = proc
            try:
                idle = memory_kib(proc.pid)
                rows[system] = measure(scenario, system)
                after = memory_kib(proc.pid)
                if not proc.alive():
                    rows[system].reason = f"exited during the run (code {proc.popen.returncode})"
                self.memory.setdefault(scenario.name, {})[system] = {"idle": idle, "after": after}
                rows[system].extra["hits_since_start"] = {
                    k: v - first_hits[k] for k, v in self.hit_counts().items()
                }
            finally:
                self.current_sut = None
                self.stop(proc)
        self.results[scenario.name] = rows
        if scenario.kind == "fallback" and rows["router"].ok:
            row = rows["router"]
            hits = row.extra["hits"]
            done = max(row.requests, 1)
            self.fallback = {
                "limited_hits_incl_warmup": row.extra["hits_since_start"]["limited"],
                "backup_hits_incl_warmup": row.extra["hits_since_start"]["backup"],
                "limited_hits": hits["limited"],
                "backup_hits": hits["backup"],
                "requests": row.requests,
                "hits_per_request": (hits["limited"] + hits["backup"]) / done,
                "limited_per_request": hits["limited"] / done,
                "backup_per_request": hits["backup"] / done,
            }
            self.log(f"  upstream hits: {self.fallback}")

    def paced_problem(self, scenario: Scenario) -> str:
        """Why the paced rows cannot run here (empty when they can)."""
        if not ECHO_MODULE.exists():
            return f"{ECHO_MODULE} missing: apt-get install libnginx-mod-http-echo"
        # wrk and each system hold one socket per stream, a proxy two.
        need = 2 * scenario.connections + 256
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < need:
            return f"open-file limit {soft} < {need}: raise ulimit -n"
        return ""

    def measure_startup(self) -> None:
        self.log("start-up time")
        n = self.s.startup_runs
        cases: list[tuple[str, list[str], dict[str, str] | None, int]] = []
        if (REPO / "main.py").exists():
            argv = self.router_argv(self.router_config("healthy"))
            cases.append(("router", argv, self.router_env(), self.s.port("router")))
        else:
            self.startup["router"] = {"status": NOT_RUN, "reason": "main.py does not exist yet"}
        first_per_server: dict[str, Variant] = {}
        for name in self.s.variants:
            first_per_server.setdefault(VARIANTS[name].server, VARIANTS[name])
        for v in first_per_server.values():
            cases.append((v.system, self.bare_argv(v.name), None, self.s.port(v.system)))
        for name, argv, env, port in cases:
            times: list[float] = []
            problem = ""
            cpu = self.cpu_snapshot()
            for i in range(n):
                proc = self.spawn(f"startup-{name}-{i}", argv, self.s.sut_cpu, env)
                try:
                    times.append(wait_http(proc, port, "/health", 30))
                except RuntimeError as exc:
                    problem = f"{exc}; log tail: {proc.log_tail(5)}"
                finally:
                    self.stop(proc)
                if problem:
                    break
            if problem:
                self.startup[name] = {"status": "error", "reason": problem}
            else:
                self.startup[name] = {
                    "status": "ok",
                    "median_s": statistics.median(times),
                    "min_s": min(times),
                    "max_s": max(times),
                    "runs": times,
                    **self.noise(cpu),
                }
            self.log(f"  {name}: {self.startup[name]}")

    def run(self) -> None:
        self.start_infra()
        for scenario in SCENARIOS:
            if self.s.wants(scenario.name):
                self.run_scenario(scenario)
        if self.s.wants("startup"):
            self.measure_startup()
        self.loadavg_end = loadavg()

    # ---- report

    def write(self) -> None:
        data = {
            "argv": self.argv,
            "settings": self.s.__dict__,
            "results": {
                k: {s: r.__dict__ for s, r in rows.items()} for k, rows in self.results.items()
            },
            "fallback": self.fallback,
            "memory": self.memory,
            "startup": self.startup,
            "router_status": self.router_status,
        }
        (self.run_dir / "results.json").write_text(json.dumps(data, indent=2, default=str))
        text = Report(self).render()
        (self.run_dir / "RESULTS.md").write_text(text)
        self.report.parent.mkdir(parents=True, exist_ok=True)
        self.report.write_text(text)
        self.log(f"report: {self.report}  raw: {self.run_dir}")


# --------------------------------------------------------------------------- markdown


def ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def other(row: Row) -> str:
    """CPU used by processes the bench did not start during the row, in % of one core."""
    value = row.extra.get("other_cores")
    if value is None:
        return "n/a"
    flag = " ⚠" if value > OTHER_CPU_WARN else ""
    return f"{value:.0%}{flag}"


def cores(row: Row) -> str:
    """CPU used by the system under test during the row, in % of one core."""
    value = row.extra.get("sut_cores")
    return "—" if value is None else f"{value:.0%}"


def per_request(row: Row) -> str:
    value = row.extra.get("cpu_us_per_request")
    return "—" if value is None else f"{value:,.0f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


class Report:
    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def row(self, scenario: str, system: str) -> Row | None:
        row = self.b.results.get(scenario, {}).get(system)
        return row if row is not None and row.ok else None

    def ratio_cells(self, scenario: str, a: str, b: str) -> list[str]:
        ra, rb = self.row(scenario, a), self.row(scenario, b)
        if ra is None or rb is None:
            return ["n/a", "n/a", "n/a"]
        noisy = any(r.extra.get("other_cores", 0) > OTHER_CPU_WARN for r in (ra, rb))
        flag = " ⚠" if noisy else ""
        return [
            ratio(a, b) + flag for a, b in ((ra.rps, rb.rps), (ra.p50, rb.p50), (ra.p99, rb.p99))
        ]

    def render(self) -> str:
        self.header()
        for sc in SCENARIOS:
            if sc.name not in self.b.results:
                continue
            if sc.kind == "closed":
                self.closed(sc)
            elif sc.kind == "open":
                self.open(sc)
            elif sc.kind == "paced":
                self.paced(sc)
            else:
                self.fallback(sc)
        self.memory()
        self.startup()
        self.summary()
        self.paced_summary()
        self.clients()
        return "\n".join(self.lines) + "\n"

    def header(self) -> None:
        b, s = self.b, self.b.s
        cmd = "bash bench/run.sh" + "".join(" " + shlex.quote(a) for a in b.argv)
        mem_total = "?"
        with contextlib.suppress(OSError, IndexError, ValueError):
            kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
            mem_total = f"{kib / 2**20:.1f} GiB"
        versions = [
            f"Python {platform.python_version()}",
            *(
                f"{p} {pkg_version(p)}"
                for p in (
                    "uvicorn",
                    "uvloop",
                    "httptools",
                    "granian",
                    "aiohttp",
                    "httpx",
                    "httpx2",
                    "pyreqwest",
                )
            ),
            f"fastapi {pkg_version('fastapi')}",
            f"starlette {pkg_version('starlette')}",
            f"nginx {nginx_version()}",
            f"wrk {wrk_version()}",
        ]
        router = "; ".join(f"{g}: {st}" for g, st in b.router_status.items()) or "not started"
        self.add(
            "# Benchmark results",
            "",
            f"- Command: `{cmd}`" + (" (quick smoke run)" if s.quick else ""),
            f"- Date: {b.started_at:%Y-%m-%d %H:%M} UTC",
            f"- Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, {mem_total} RAM, "
            f"Linux {platform.release()}",
            f"- Versions: {', '.join(versions)}",
            f"- Router git commit: {git_commit()}; main.py "
            f"{'present' if (REPO / 'main.py').exists() else 'absent'}; router runs: {router}",
            f"- Topology: systems under test on CPU {s.sut_cpu}; wrk/open-loop generator and the "
            f"upstream nginx on CPU {s.load_cpu}. wrk `-t1`, {s.warmup} s warm-up then "
            f"{s.duration} s measured per row. Latencies in ms.",
            f"- Raw output: `{b.run_dir.relative_to(REPO)}/` (git-ignored)",
            "",
            "Systems: **direct** = wrk → upstream nginx; **nginx-proxy** = nginx reverse proxy "
            "(1 worker, keepalive pool); **bare-<variant>** = `bench/bare_forwarder.py`, one "
            "pooled client (aiohttp, httpx, httpx2 or pyreqwest, as named) in a raw ASGI app on "
            "uvicorn + uvloop + httptools, or for **bare-granian-<client>** a raw RSGI app on "
            "granian (1 worker process, uvloop); **router** = `main.py`, 1 worker. "
            "The machine is shared and noisy: compare ratios within this run, not absolute "
            "numbers across runs.",
            "",
            f"*other CPU*: CPU time used during the measured part of a row by processes this "
            f"bench did not start (other users of the machine), in % of one core, from "
            f"`/proc/stat` minus the bench's own processes; ⚠ marks rows above "
            f"{OTHER_CPU_WARN:.0%}, whose numbers are suspect. Load average at start "
            f"{b.loadavg_start}, at end {b.loadavg_end}.",
            "",
        )

    def closed(self, sc: Scenario) -> None:
        rows = self.b.results[sc.name]
        self.add(f"## {sc.title} (`{sc.name}`)", "")
        self.add(
            "| system | req/s | p50 | p90 | p99 | p99.9 | requests | non-2xx | socket errors "
            "| CPU | CPU µs/req | other CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        )
        for system, r in rows.items():
            if r.ok:
                self.add(
                    f"| {system} | {r.rps:,.0f} | {ms(r.p50)} | {ms(r.p90)} | {ms(r.p99)} | "
                    f"{ms(r.p999)} | {r.requests:,} | {r.non_2xx} | {r.errors} | "
                    f"{cores(r)} | {per_request(r)} | {other(r)} |"
                )
            else:
                self.add(f"| {system} | {r.status}: {r.reason} | | | | | | | | | | |")
        self.add("", "| ratio | req/s | p50 | p99 |", "|---|---:|---:|---:|")
        pairs = [("router", "direct"), ("router", "nginx-proxy")]
        bare = self.b.s.bare_systems()
        pairs += [(system, "nginx-proxy") for system in bare]
        if bare:
            pairs.append(("router", bare[0]))
        for a, b in pairs:
            self.add(f"| {a} / {b} | " + " | ".join(self.ratio_cells(sc.name, a, b)) + " |")
        self.add("")

    def open(self, sc: Scenario) -> None:
        s = self.b.s
        rows = self.b.results[sc.name]
        self.add(
            f"## {sc.title} at {s.open_rate:g} req/s (`{sc.name}`)",
            "",
            f"Open loop: `bench/openloop.py` (aiohttp, CPU {s.load_cpu}) sends request *i* at "
            f"start + i/rate for {s.open_duration:g} s (after {s.open_warmup:g} s warm-up); "
            "latency is measured from the scheduled send time, so queueing is not hidden "
            "(no coordinated omission). *Added* = this system minus direct at the same "
            "percentile. *Service p99* is measured from the actual send instead; *gen. lag p99* "
            "is how late the generator itself sent (part of every row, direct included).",
            "",
            "| system | achieved req/s | ok | non-2xx | errors | p50 | p90 | p99 | p99.9 | "
            "added p50 | added p90 | added p99 | service p99 | gen. lag p99 | other CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        )
        direct = rows.get("direct")
        for system, r in rows.items():
            if not r.ok:
                self.add(f"| {system} | {r.status}: {r.reason} |" + " |" * 13)
                continue
            added = ["n/a"] * 3
            if direct is not None and direct.ok:
                added = [
                    f"{v - d:+.2f}"
                    for v, d in ((r.p50, direct.p50), (r.p90, direct.p90), (r.p99, direct.p99))
                ]
            self.add(
                f"| {system} | {r.rps:.1f} | {r.requests:,} | {r.non_2xx} | {r.errors} | "
                f"{ms(r.p50)} | {ms(r.p90)} | {ms(r.p99)} | {ms(r.p999)} | "
                + " | ".join(added)
                + f" | {ms(r.extra['service_ms']['p99'])} | {ms(r.extra['send_lag_ms']['p99'])} "
                f"| {other(r)} |"
            )
        self.add("")

    def per_event(self, sc: Scenario, system: str) -> float | None:
        """CPU µs per relayed event: (CPU per stream - CPU per non-streaming request of the
        same family and system, this run) / events per stream."""
        r = self.row(sc.name, system)
        base = self.row(sc.family.baseline, system)
        if r is None or base is None:
            return None
        stream, request = r.extra.get("cpu_us_per_request"), base.extra.get("cpu_us_per_request")
        if stream is None or request is None:
            return None
        return float(stream - request) / PACED_EVENTS

    def paced(self, sc: Scenario) -> None:
        rows = self.b.results[sc.name]
        self.add(
            f"## {sc.title} (`{sc.name}`)",
            "",
            f"Upstream: nginx's echo module sends {PACED_EVENTS} events {PACED_INTERVAL * 1000:g} "
            f"ms apart (`{PACED}{sc.family.upstream_path}`); wrk keeps {sc.connections:,} streams "
            "open (closed loop), latency = whole stream. *CPU µs/event* = (CPU µs per stream "
            f"- CPU µs per request of this system's `{sc.family.baseline}` row) / {PACED_EVENTS}. "
            f"*RSS open* = RSS half-way through the run, with {sc.connections:,} streams open. "
            "*upstream CPU*: the pacing nginx (shares CPU 1 with wrk; must stay far from 100%).",
            "",
            "| system | streams/s | p50 | p90 | p99 | streams | non-2xx | socket errors | CPU "
            "| CPU µs/stream | CPU µs/event | RSS open MiB | upstream CPU | other CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        )
        for system, r in rows.items():
            if not r.ok:
                self.add(f"| {system} | {r.status}: {r.reason} |" + " |" * 12)
                continue
            event = self.per_event(sc, system)
            rss = r.extra.get("rss_kib")
            self.add(
                f"| {system} | {r.rps:,.0f} | {ms(r.p50)} | {ms(r.p90)} | {ms(r.p99)} | "
                f"{r.requests:,} | {r.non_2xx} | {r.errors} | {cores(r)} | {per_request(r)} | "
                f"{f'{event:.1f}' if event is not None else 'n/a'} | "
                f"{f'{rss / 1024:.1f}' if rss else '—'} | "
                f"{r.extra.get('upstream_cores', 0):.0%} | {other(r)} |"
            )
        self.add("", "| ratio | streams/s | p50 | p99 |", "|---|---:|---:|---:|")
        bare = self.b.s.bare_systems()[:1]
        pairs = [("router", "nginx-proxy"), *((b, "nginx-proxy") for b in bare)]
        pairs += [("router", b) for b in bare]
        for a, b in pairs:
            self.add(f"| {a} / {b} | " + " | ".join(self.ratio_cells(sc.name, a, b)) + " |")
        self.add("")

    def paced_summary(self) -> None:
        scs = [sc for sc in SCENARIOS if sc.kind == "paced" and self.row(sc.name, "router")]
        if not scs:
            return
        bare = next(iter(self.b.s.bare_systems()), "bare")
        self.add(
            "## Paced streams summary",
            "",
            "The targets of issue 14 in one table: router streams/s against the nginx proxy and "
            f"against {bare} (the router's own stack with no logic), the added median stream "
            "time, and CPU per relayed event (see each paced section for how it is computed).",
            "",
            f"| scenario | router/nginx-proxy | router p50 - nginx p50 ms | router/{bare} | "
            f"{bare}/nginx-proxy | router µs/event | {bare} µs/event | nginx µs/event "
            "| router µs/stream | router RSS open MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        )
        for sc in scs:
            router, nginx = self.row(sc.name, "router"), self.row(sc.name, "nginx-proxy")
            assert router is not None
            added = f"{router.p50 - nginx.p50:+.1f}" if nginx else "n/a"
            events = [self.per_event(sc, s) for s in ("router", bare, "nginx-proxy")]
            rss = router.extra.get("rss_kib")
            self.add(
                f"| {sc.name} | {self.ratio_cells(sc.name, 'router', 'nginx-proxy')[0]} | "
                f"{added} | {self.ratio_cells(sc.name, 'router', bare)[0]} | "
                f"{self.ratio_cells(sc.name, bare, 'nginx-proxy')[0]} | "
                + " | ".join(f"{e:.1f}" if e is not None else "n/a" for e in events)
                + f" | {per_request(router)} | {f'{rss / 1024:.1f}' if rss else '—'} |"
            )
        self.add("")

    def fallback(self, sc: Scenario) -> None:
        r = self.b.results[sc.name]["router"]
        healthy = self.row("openai-32", "router")
        self.add(
            f"## {sc.title} (`{sc.name}`)",
            "",
            "Router config: `primary` (priority 1) → upstream `/limited/...`, which always answers "
            "429 with `retry-after: 30` and an OpenAI rate-limit error body; `backup` (priority 2) "
            "→ `/backup/...`, the same static answers as `/up/...`. Upstream hits are counted "
            "from nginx access logs of those two locations during the measured run.",
            "",
        )
        if not r.ok:
            self.add(f"Router: {r.status}: {r.reason}", "")
            return
        fb = self.b.fallback
        self.add(
            "| case | req/s | p50 | p90 | p99 | non-2xx | /limited hits/req | /backup hits/req | "
            "upstream hits/req | other CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        )
        if healthy is not None:
            self.add(
                f"| healthy primary (`openai-32` router row) | {healthy.rps:,.0f} | "
                f"{ms(healthy.p50)} | {ms(healthy.p90)} | {ms(healthy.p99)} | {healthy.non_2xx} "
                f"| 0 | 0 | 1 (by construction) | {other(healthy)} |"
            )
        self.add(
            f"| primary rate-limited | {r.rps:,.0f} | {ms(r.p50)} | {ms(r.p90)} | {ms(r.p99)} | "
            f"{r.non_2xx} | {fb['limited_per_request']:.3f} | {fb['backup_per_request']:.3f} | "
            f"{fb['hits_per_request']:.3f} | {other(r)} |",
            "",
        )
        if healthy is not None:
            self.add(
                f"Rate-limited / healthy: req/s {ratio(r.rps, healthy.rps)}, "
                f"p50 {ratio(r.p50, healthy.p50)}, p99 {ratio(r.p99, healthy.p99)}. "
                f"({fb['limited_hits']:,} hits on /limited and {fb['backup_hits']:,} on /backup "
                f"for {fb['requests']:,} completed requests in the measured run; counting the "
                f"warm-up too: {fb['limited_hits_incl_warmup']:,} on /limited, "
                f"{fb['backup_hits_incl_warmup']:,} on /backup.)",
                "",
            )

    def peak_mib(self, system: str) -> float | None:
        peaks = [
            per[system]["after"]["VmHWM"] / 1024 for per in self.b.memory.values() if system in per
        ]
        return max(peaks) if peaks else None

    def memory(self) -> None:
        mem = self.b.memory
        if not mem:
            return
        systems = [*self.b.s.bare_systems(), "router"]
        self.add(
            "## Memory",
            "",
            "Each Python system under test is a fresh process per scenario. Cells: RSS right "
            "after start-up → peak RSS (VmHWM) at the end of the scenario's load, in MiB, from "
            "`/proc/PID/status` (summed over child processes, if any: for bare-granian-* the "
            "granian server process and its worker).",
            "",
            "| scenario | " + " | ".join(systems) + " |",
            "|---|" + "---:|" * len(systems),
        )
        for sc in SCENARIOS:
            if sc.name not in mem:
                continue
            cells = []
            for system in systems:
                e = mem[sc.name].get(system)
                cells.append(
                    f"{e['idle']['VmRSS'] / 1024:.1f} → {e['after']['VmHWM'] / 1024:.1f}"
                    if e
                    else "—"
                )
            self.add(f"| {sc.name} | " + " | ".join(cells) + " |")
        peaks = [(sys_, self.peak_mib(sys_)) for sys_ in systems]
        self.add(
            "",
            "Peak RSS over all scenarios: "
            + ", ".join(f"{n} {p:.1f} MiB" if p else f"{n} not run" for n, p in peaks)
            + ".",
            "",
        )

    def startup(self) -> None:
        if not self.b.startup:
            return
        self.add(
            "## Start-up time",
            "",
            f"From spawning the process to the first 200 from `GET /health` "
            f"(polled every 5 ms), {self.b.s.startup_runs} runs.",
            "",
            "| process | median s | min s | max s | other CPU |",
            "|---|---:|---:|---:|---:|",
        )
        for name, st in self.b.startup.items():
            if st["status"] == "ok":
                noise = other(Row(name, extra=st))
                self.add(
                    f"| {name} | {st['median_s']:.3f} | {st['min_s']:.3f} | {st['max_s']:.3f} "
                    f"| {noise} |"
                )
            else:
                self.add(f"| {name} | {st['status']}: {st['reason']} | | | |")
        self.add("")

    def summary(self) -> None:
        closed = [sc for sc in SCENARIOS if sc.kind == "closed" and sc.name in self.b.results]
        if not closed:
            return
        first = next(iter(self.b.s.bare_systems()), "bare")
        self.add(
            "## Ratio summary (req/s)",
            "",
            "Throughput ratios: 1.00 = as fast as the reference; router/direct is the share of "
            "the upstream's own rate the router keeps, router/nginx-proxy compares with a "
            f"C proxy on the same core, {first}/nginx-proxy is the floor for any Python "
            "forwarder.",
            "",
            f"| scenario | router/direct | router/nginx-proxy | {first}/nginx-proxy | "
            f"router/{first} |",
            "|---|---:|---:|---:|---:|",
        )
        for sc in closed:
            cells = [
                self.ratio_cells(sc.name, a, b)[0]
                for a, b in (
                    ("router", "direct"),
                    ("router", "nginx-proxy"),
                    (first, "nginx-proxy"),
                    ("router", first),
                )
            ]
            self.add(f"| {sc.name} | " + " | ".join(cells) + " |")
        self.add("")

    def clients(self) -> None:
        variants = [VARIANTS[name] for name in self.b.s.variants]
        measured = [
            sc for sc in SCENARIOS if sc.name in self.b.results and sc.kind in ("closed", "open")
        ]
        if len(variants) < 2 or not measured:
            return
        base = variants[0].system
        self.add(
            "## Bare forwarder comparison (server and HTTP client)",
            "",
            "The same forwarding code (`bench/bare_forwarder.py`) on each server (uvicorn: raw "
            "ASGI, uvloop + httptools; granian: raw RSGI, uvloop, 1 worker process) with each "
            "async client (one shared pool of up to 512 connections). Latencies in ms; "
            f"*/ {base}* = req/s relative to {base} in the same scenario.",
            "",
            f"| scenario | system | server | client | req/s | / {base} | p50 | p99 | other CPU |",
            "|---|---|---|---|---:|---:|---:|---:|---:|",
        )
        for sc in measured:
            ref = self.row(sc.name, base)
            for v in variants:
                r = self.row(sc.name, v.system)
                if r is None:
                    cells = ["n/a"] * 5
                else:
                    rel = ratio(r.rps, ref.rps) if ref else "n/a"
                    cells = [f"{r.rps:,.0f}", rel, ms(r.p50), ms(r.p99), other(r)]
                self.add(
                    f"| {sc.name} | {v.system} | {v.server} | {v.client} | "
                    + " | ".join(cells)
                    + " |"
                )
        peaks = [(v.system, self.peak_mib(v.system)) for v in variants]
        self.add(
            "",
            "Peak RSS (max over scenarios, summed over the process tree): "
            + ", ".join(f"{n} {p:.1f} MiB" if p else f"{n} n/a" for n, p in peaks)
            + ".",
            "",
        )


# --------------------------------------------------------------------------- main


def installed(variant: Variant) -> bool:
    missing = [p for p in variant.packages if pkg_version(p) == "not installed"]
    if missing:
        print(
            f"warning: {variant.system} skipped: {', '.join(missing)} not installed",
            file=sys.stderr,
        )
    return not missing


def parse_args(argv: list[str]) -> Settings:
    names = [sc.name for sc in SCENARIOS] + list(EXTRA_STEPS)
    p = argparse.ArgumentParser(prog="bash bench/run.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 s per scenario smoke run")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these steps (repeat or comma-separate): {', '.join(names)}",
    )
    p.add_argument("--duration", type=int, help="measured seconds per row (default 10, quick 3)")
    p.add_argument("--warmup", type=int, help="warm-up seconds per row (default 2, quick 1)")
    p.add_argument("--rate", type=float, default=200.0, help="open-loop req/s (default 200)")
    p.add_argument("--open-duration", type=float, help="open-loop seconds (default 15, quick 3)")
    p.add_argument(
        "--clients",
        default=",".join(VARIANTS),
        metavar="VARIANT[,VARIANT...]",
        help=f"bare forwarder variants, the first is the reference (default {','.join(VARIANTS)})",
    )
    p.add_argument("--sut-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--port-base", type=int, default=18080)
    p.add_argument("--report", type=Path, help="markdown output (default: see README)")
    a = p.parse_args(argv)
    only = tuple(n.strip() for item in a.only for n in item.split(",") if n.strip())
    unknown = [n for n in only if n not in names]
    if unknown:
        p.error(f"unknown --only {unknown}; choose from {names}")
    variants = tuple(dict.fromkeys(c.strip() for c in a.clients.split(",") if c.strip()))
    bad = [c for c in variants if c not in VARIANTS]
    if bad:
        p.error(f"unknown --clients {bad}; choose from {', '.join(VARIANTS)}")
    available = tuple(v for v in variants if installed(VARIANTS[v]))
    ncpu = os.cpu_count() or 1
    sut, load = a.sut_cpu, a.load_cpu
    if ncpu < 2 and sut != load:
        print("warning: fewer than 2 CPUs; everything shares CPU 0", file=sys.stderr)
        sut = load = 0
    return Settings(
        duration=a.duration or (3 if a.quick else 10),
        warmup=a.warmup if a.warmup is not None else (1 if a.quick else 2),
        open_rate=a.rate,
        open_duration=a.open_duration or (3.0 if a.quick else 15.0),
        open_warmup=1.0 if a.quick else 2.0,
        startup_runs=3 if a.quick else 5,
        sut_cpu=sut,
        load_cpu=load,
        port_base=a.port_base,
        variants=available,
        only=only,
        quick=a.quick,
        report=a.report,
    )


def report_path(s: Settings, run_dir: Path) -> Path:
    if s.report is not None:
        return s.report.resolve()
    full = not s.quick and not s.only and s.duration >= 10
    return DEFAULT_REPORT if full else run_dir / "RESULTS.md"


def raise_open_file_limit(want: int = 65536) -> None:
    """Lift the soft descriptor limit (inherited by every process started here) toward
    ``want``: 1,024 streams take over 2,048 sockets in a proxy, more than the usual 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: run through bash bench/run.sh", file=sys.stderr)
            return 2
    raise_open_file_limit()
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if settings.quick else "")
    run_dir = BENCH / "results" / stamp
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    bench = Bench(settings, argv, run_dir, report_path(settings, run_dir))
    t0 = time.perf_counter()
    with terminate_on_sigterm():
        try:
            bench.run()
        finally:
            bench.stop_all()
    bench.write()
    bench.log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
