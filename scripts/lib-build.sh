# Shared by the installer scripts (sourced, not run): the pinned build tools and the dependency digest.
# Build tools go to build/tools (a venv); nothing is installed system-wide except Debian packages.

TOOLS_VENV="build/tools"
# Pure-Python packages published as sources only (pywebview's proxy-tools): the only ones the bundles for another
# OS build rather than take as wheels.
SDIST_ONLY="proxy-tools"

tools_venv() {
  # A venv with the pinned tools of installer/build-tools.txt (uv to resolve, distlib for the Windows launchers).
  if [ ! -x "$TOOLS_VENV/bin/uv" ]; then
    python3 -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install --quiet --require-hashes --no-deps --only-binary=:all: \
      -r installer/build-tools.txt
  fi
}

deps_digest() {  # what the installer locks were resolved from (scripts/lock_digest.py)
  python3 scripts/lock_digest.py pyproject.toml
}

check_lock() {
  # $1: a lock file written by scripts/lock-installers.sh; fails when pyproject.toml changed since.
  local want have
  want=$(deps_digest)
  have=$(sed -n 's/^# relais-deps-digest: //p' "$1")
  if [ "$want" != "$have" ]; then
    echo "$1 is out of date with pyproject.toml (digest $have, now $want): run scripts/lock-installers.sh" >&2
    return 1
  fi
}

project_version() {
  python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])'
}
