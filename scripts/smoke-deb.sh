#!/usr/bin/env bash
# Smoke test of the .deb in a fresh Debian 12 (minbase + python3, libpcsclite1, systemd): install, `relais
# --version`, `relais doctor`, `relais demo --cards none` answering /v1/health, the user unit enabled for all
# users, removal keeping the data folder. Needs root (chroot) and mmdebstrap; the first run builds the chroot's
# tarball (30 s to 5 minutes depending on the mirror, cached in build/deb-chroot/).
# $1: the .deb (default: dist/relais_<version>_amd64.deb).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-build.sh
deb=${1:-dist/relais_$(project_version)_amd64.deb}
[ -f "$deb" ] || { echo "no package at $deb: run scripts/build-deb.sh" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (chroot)" >&2; exit 1; }
tarball=build/deb-chroot/bookworm.tar
started=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - started )) s)"; }
fail() { echo "SMOKE FAILED: $*" >&2; exit 1; }
if [ ! -f "$tarball" ]; then
  step "mmdebstrap bookworm"
  mkdir -p "$(dirname "$tarball")"
  mmdebstrap --quiet --format=tar --variant=minbase --include=python3,libpcsclite1,systemd,curl bookworm "$tarball.part"
  mv "$tarball.part" "$tarball"
fi
root=$(mktemp -d /tmp/relais-chroot.XXXXXX)
demo_pid=""
cleanup() {
  [ -z "$demo_pid" ] || kill "$demo_pid" 2>/dev/null || true
  umount "$root/proc" "$root/dev" 2>/dev/null || true
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
step "fresh chroot"
tar -xf "$tarball" -C "$root"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
in_root() { chroot "$root" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
cp "$deb" "$root/tmp/relais.deb"

step "dpkg -i"
in_root dpkg -i /tmp/relais.deb >/dev/null || fail "dpkg -i failed"
[ -L "$root/etc/systemd/user/default.target.wants/relais-agent.service" ] || fail "user unit not enabled globally"

step "relais --version"
version=$(in_root relais --version)
[ "$version" = "relais $(project_version)" ] || fail "relais --version said: $version"

step "relais doctor"
doctor=$(in_root relais doctor || true)
echo "$doctor"
grep -q "dossier de données accessible en écriture" <<<"$doctor" || fail "doctor did not check the data folder"

step "relais demo: /v1/health"
port=$((20000 + RANDOM % 20000))
# exec: $! is then the agent itself (chroot and env exec), which SIGINT stops cleanly.
(exec chroot "$root" env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 \
  relais demo --cards none --no-tray --port "$port" --peer-port $((port + 1)) >"$root/tmp/demo.log" 2>&1) &
demo_pid=$!
health=""
for _ in $(seq 1 60); do
  health=$(curl -fsS "http://127.0.0.1:$port/v1/health" 2>/dev/null) && break
  kill -0 "$demo_pid" 2>/dev/null || break
  sleep 1
done
[ -n "$health" ] || { cat "$root/tmp/demo.log"; fail "the demo agent did not answer /v1/health"; }
echo "/v1/health: $health"
kill -INT "$demo_pid" 2>/dev/null || true
wait "$demo_pid" 2>/dev/null || true
demo_pid=""

step "dpkg -r"
in_root dpkg -r relais >/dev/null || fail "dpkg -r failed"
[ ! -e "$root/opt/relais" ] || fail "/opt/relais left behind: $(find "$root/opt/relais" | head -5)"
[ -d "$root/root/.local/share/relais" ] || fail "the data folder was removed"
step "smoke test passed"
