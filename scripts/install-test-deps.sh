#!/usr/bin/env bash
# Installs what Rill's interop tests need: kcat (with librdkafka), Node.js with
# npm, a Python venv at .venv with the pinned clients of
# tests/interop/requirements.txt, KafkaJS in tests/interop/js/node_modules,
# and the system tools the fault tests use (prlimit, losetup, mkfs.ext4).
#
# Safe to run again and again: each step first checks whether its result is
# already there, so a second run takes about a second and touches no registry.
# Works on a fresh Debian bookworm machine as root (or with sudo), reaching
# only Debian's archive, PyPI and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."

# Where the Python clients live. Tests and scripts/test.sh use .venv/bin/python.
venv_dir=.venv
requirements=tests/interop/requirements.txt
js_dir=tests/interop/js

log() { echo "install-test-deps: $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

# `apt-get update` is slow and needs the network, so it runs only when some
# package is actually missing, and at most once per run.
apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq
        apt_updated=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@"
}

# --- Debian packages --------------------------------------------------------
# kcat is Debian's package name for kafkacat; it pulls in librdkafka1.
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The resource and fault tests: prlimit (a low open-file limit), mount and
# losetup (a small tmpfs, ext4 on a loop device), mkfs.ext4.
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)
command -v losetup >/dev/null 2>&1 || missing+=(mount)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# --- Python venv ------------------------------------------------------------
# python3 is whatever is first on PATH: pyenv's CPython on the developers'
# machines, Debian's /usr/bin/python3 on a fresh one. A venv remembers the
# interpreter it was made from, so one whose interpreter is gone is rebuilt.
if [ -d "$venv_dir" ] && ! "$venv_dir/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "removing $venv_dir: its interpreter no longer runs"
    rm -rf "$venv_dir"
fi
if [ ! -x "$venv_dir/bin/python" ]; then
    log "creating $venv_dir with $(command -v python3)"
    if ! python3 -m venv "$venv_dir" 2>/dev/null; then
        # Debian splits venv/ensurepip out of python3 into python3-venv.
        rm -rf "$venv_dir"
        apt_install python3-venv
        python3 -m venv "$venv_dir"
    fi
fi

# The stamp records what was installed: the requirements file and the
# interpreter version. If either changes, pip runs again.
py_stamp="$venv_dir/.rill-requirements.sha256"
py_want="$( (cat "$requirements"; "$venv_dir/bin/python" -VV) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$py_stamp" 2>/dev/null || true)" != "$py_want" ]; then
    log "pip install -r $requirements"
    "$venv_dir/bin/python" -m pip install -q --disable-pip-version-check \
        --no-input -r "$requirements"
    echo "$py_want" >"$py_stamp"
fi

# --- KafkaJS ----------------------------------------------------------------
# `npm ci` installs exactly package-lock.json; the stamp skips it when the
# lock file has not changed since the last install.
js_stamp="$js_dir/node_modules/.rill-lock.sha256"
js_want="$(sha256sum "$js_dir/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$js_stamp" 2>/dev/null || true)" != "$js_want" ]; then
    log "npm ci in $js_dir"
    (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$js_want" >"$js_stamp"
fi

kcat_version="$(kcat -V 2>&1 | awk '/^Version/ { print $2, "(librdkafka", $7 ")" }')"
py_versions="$("$venv_dir/bin/python" -c 'import confluent_kafka, kafka
print("confluent-kafka", confluent_kafka.__version__, "(librdkafka", confluent_kafka.libversion()[0] + "), kafka-python", kafka.__version__)')"
log "ready: kcat $kcat_version; node $(node --version); $py_versions"
