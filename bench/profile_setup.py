"""Helper of bench/profile.sh: write its configs, or summarise a py-spy raw profile."""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

import bench

BODIES = {
    "openai": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]},
    "anthropic": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hello"}],
    },
}
UPSTREAM_PORT = 18281


def setup(run: Path, family: str, mode: str) -> None:
    """``mode``: "" (non-streaming), "stream" (static stream) or "paced" (LLM-like stream)."""
    (run / "upstream.conf").write_text(bench.upstream_conf(run, UPSTREAM_PORT))
    stream = mode in ("stream", "paced")
    prefix = {"stream": "upstream-stream", "paced": "paced"}.get(mode, "up")
    base = f"http://127.0.0.1:{UPSTREAM_PORT}/{prefix}" + ("/v1" if family == "openai" else "")
    config = {family: [{"name": "primary", "api_key": "sk-profile", "base_url": base}]}
    (run / "router.json").write_text(json.dumps(config))
    body = dict(BODIES[family], stream=stream)
    (run / "body.json").write_text(json.dumps(body))
    (run / "post.lua").write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{run / "body.json"}", "r"); wrk.body = f:read("*a"); f:close()\n'
    )


def summarize(profile: Path) -> None:
    by_function: collections.Counter[str] = collections.Counter()
    by_package: collections.Counter[str] = collections.Counter()
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        leaf = stack.split(";")[-1]
        by_function[leaf] += samples
        match = re.search(r"\(([^:)]*)", leaf)
        path = match.group(1) if match else leaf
        if "site-packages/" in path:
            package = path.split("site-packages/")[1].split("/")[0]
        elif "llm_api_router" in path:
            package = "llm_api_router (ours)"
        elif "/lib/python3" in path:
            package = "stdlib: " + path.rsplit("/", 1)[-1]
        else:
            package = path or "(native)"
        by_package[package] += samples
    print(f"{total} samples")
    print("\nself time by package:")
    for name, samples in by_package.most_common(12):
        print(f"  {100 * samples / total:5.1f}%  {name}")
    print("\nself time by function:")
    for name, samples in by_function.most_common(25):
        print(f"  {100 * samples / total:5.1f}%  {name[:110]}")


if __name__ == "__main__":
    if sys.argv[1] == "--summarize":
        summarize(Path(sys.argv[2]))
    else:
        setup(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
