# Shared by scripts/run and scripts/test: create .venv and install a hashed lock into it.
# Usage: . scripts/_venv.sh; ensure_venv requirements/<lock>
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LLM_ROUTER_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

ensure_venv() {
    local lock="$1"
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "llm-api-router needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
        exit 1
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating the virtualenv $VENV (first run only)"
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-$(basename "$lock")"
    if [ ! -f "$stamp" ] || [ "$ROOT/$lock" -nt "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        say "installing $lock into $VENV (first run, or a lock changed; about 30 s)"
        # First the pinned pip, so every lock is read the same way whatever pip came with
        # the interpreter; then the hashed lock.
        say "  1/3 pip, pinned (requirements/pip.lock)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            --require-hashes -r "$ROOT/requirements/pip.lock"
        say "  2/3 dependencies, pinned with hashes ($lock)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            --require-hashes -r "$ROOT/requirements/build.lock" -r "$ROOT/$lock"
        say "  3/3 llm-api-router itself (editable)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            --no-deps --no-build-isolation -e "$ROOT"
        touch "$stamp"
        say "installed"
    fi
}

# Progress goes to stderr: stdout is the program's.
say() {
    echo "llm-api-router: $*" >&2
}
