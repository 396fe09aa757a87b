# Shared by scripts/demo and scripts/test (sourced, not run).
#
# - moto, the local AWS API, lives in a Python venv in .venv (git-ignored),
#   installed from PyPI on first use.
# - Builds go to one target folder shared by the demo and the tests, outside
#   the clone, so a fresh clone (CI's, a second checkout) reuses compiled
#   dependencies instead of spending minutes on the AWS SDK again. Set
#   CARGO_TARGET_DIR to choose another place.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOTO_VERSION=5.2.5

die() {
    echo "error: $*" >&2
    exit 1
}

ensure_tools() {
    command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs (gameday needs Rust 1.95 or newer)"
    command -v python3 >/dev/null || die "python3 not found: it is needed for moto, the local AWS API the demo and tests use"
}

ensure_moto() {
    if [ -x "$ROOT/.venv/bin/moto_server" ] &&
        "$ROOT/.venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('moto') != '$MOTO_VERSION')" 2>/dev/null; then
        return
    fi
    echo "installing moto[server]==$MOTO_VERSION into .venv (first time only)..." >&2
    python3 -m venv "$ROOT/.venv" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
    "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" ||
        die "pip could not install moto[server]==$MOTO_VERSION"
}

use_shared_target_dir() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gameday/target}"
    # Cargo decides whether gameday itself is fresh from the mtimes of its
    # sources, not their folder: after a build from another checkout (a CI
    # clone, a second work tree) it could reuse that checkout's binaries,
    # paths compiled in. When the checkout changes, touch ours so gameday is
    # rebuilt (seconds); the dependencies stay shared.
    local marker="$CARGO_TARGET_DIR/.gameday-checkout"
    if [ "$(cat "$marker" 2>/dev/null)" != "$ROOT" ]; then
        find "$ROOT/src" "$ROOT/tests" "$ROOT/benches" -type f -exec touch {} +
        mkdir -p "$CARGO_TARGET_DIR"
        printf '%s\n' "$ROOT" >"$marker"
    fi
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The browser test of report.html needs Debian's chromium. Installs it with
# apt-get when missing (we may be root in CI). When it cannot, the tests still
# run and only the browser test is skipped, loudly (GAMEDAY_SKIP_BROWSER_TEST).
ensure_chromium() {
    if [ -n "${GAMEDAY_CHROMIUM:-}" ] && [ -x "$GAMEDAY_CHROMIUM" ]; then
        return
    fi
    if command -v chromium >/dev/null; then
        export GAMEDAY_CHROMIUM=$(command -v chromium)
        return
    fi
    local why=""
    if ! command -v apt-get >/dev/null; then
        why="apt-get is not available to install chromium"
    elif [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
        why="installing chromium needs root (or sudo)"
    else
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "installing chromium for the browser test of report.html (first time only)..." >&2
        if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; } >&2; then
            why="apt-get could not install chromium"
        fi
    fi
    if command -v chromium >/dev/null; then
        export GAMEDAY_CHROMIUM=$(command -v chromium)
    else
        echo "" >&2
        echo "!!! WARNING: $why: the browser test of report.html will be SKIPPED !!!" >&2
        echo "" >&2
        export GAMEDAY_SKIP_BROWSER_TEST="$why"
    fi
}
