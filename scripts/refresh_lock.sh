#!/usr/bin/env bash
# Regenerate the pinned, hash-checked lock files from setup.cfg, for CPython 3.11 on Linux:
#
#   requirements.lock       install_requires (what the Docker image and `pip install -r` use)
#   requirements-test.lock  install_requires + the `test` extra, with the runtime pins held
#                           at requirements.lock's
#
# Usage (from anywhere; needs python3 and access to PyPI):
#
#   scripts/refresh_lock.sh                          # keep current pins; apply setup.cfg changes
#   scripts/refresh_lock.sh --upgrade                # newest versions setup.cfg allows
#   scripts/refresh_lock.sh --upgrade-package numpy  # move one package
#
# Extra arguments go to both `uv pip compile` calls. What runs, in a copy of the project:
#
#   uv pip compile setup.cfg --no-config --python-version 3.11 --python-platform linux \
#       --generate-hashes --custom-compile-command scripts/refresh_lock.sh -o requirements.lock
#   uv pip compile setup.cfg --extra test -c requirements.lock <same options> -o requirements-test.lock
#
# uv (version pinned below) goes into a throwaway virtualenv under $TMPDIR, never into the
# project's. Review the diff, then run tests/test_packaging.py.
set -euo pipefail

UV_VERSION=0.13.8
PYTHON="${PYTHON:-python3}"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/hmmclf-lock.XXXXXX")"
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet "uv==$UV_VERSION"
uv="$work/tools/bin/uv"

# Resolving setup.cfg builds the project's metadata; doing it in a copy keeps setuptools'
# build/ and *.egg-info/ out of the work tree. Existing locks are copied so that uv keeps
# their pins unless told to upgrade.
mkdir "$work/src"
cp "$repo/setup.cfg" "$repo/pyproject.toml" "$repo/README.md" "$work/src/"
cp -R "$repo/hmmclf" "$work/src/hmmclf"
for f in LICENSE requirements.lock requirements-test.lock; do
    if [ -f "$repo/$f" ]; then cp "$repo/$f" "$work/src/"; fi
done

common=(
    --no-config
    --python-version 3.11
    --python-platform linux
    --generate-hashes
    --custom-compile-command scripts/refresh_lock.sh
)
cd "$work/src"
# (uv also prints the lock on stdout: dropped; its summary goes to stderr.)
"$uv" pip compile setup.cfg "${common[@]}" "$@" -o requirements.lock >/dev/null
"$uv" pip compile setup.cfg --extra test -c requirements.lock "${common[@]}" "$@" \
    -o requirements-test.lock >/dev/null
cp requirements.lock requirements-test.lock "$repo/"
echo "refresh_lock: wrote $repo/requirements.lock and $repo/requirements-test.lock"
