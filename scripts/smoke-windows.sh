#!/usr/bin/env bash
# Smoke test of the Windows setup under wine (a throw-away 64-bit prefix): silent per-user install, `relais
# --version`, `relais doctor`, `relais demo --cards none` answering /v1/health, silent uninstall that keeps the
# data folder; then the same setup with /ALLUSERS (Program Files, the machine's Run key) and its uninstall.
# $1: the setup (default: dist/Relais-Setup-<version>.exe, built by scripts/build-windows.sh).
# What wine cannot run is listed in installer/README.md (manual checks on a real Windows machine).
# Output of Windows programs goes through pipes: under wine 8, CPython cannot open its standard streams on a
# redirected regular file ("init_sys_streams: Invalid handle").
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-build.sh
setup=${1:-dist/Relais-Setup-$(project_version).exe}
[ -f "$setup" ] || { echo "no setup at $setup: run scripts/build-windows.sh" >&2; exit 1; }
command -v wine >/dev/null || { echo "wine missing: apt-get install wine wine64" >&2; exit 1; }

export WINEPREFIX WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="  # no Mono/Gecko prompts
WINEPREFIX=$(mktemp -d /tmp/relais-wine.XXXXXX)
demo_pid=""
cleanup() {
  [ -z "$demo_pid" ] || kill "$demo_pid" 2>/dev/null || true
  wineserver -k 2>/dev/null || true
  rm -rf "$WINEPREFIX"
}
trap cleanup EXIT
started=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - started )) s)"; }
fail() { echo "SMOKE FAILED: $*" >&2; exit 1; }
# Through a pipe, never a file (see above); Python writes to a pipe in the ANSI code page (cp1252 here).
win() { wine "$@" </dev/null 2>&1 | tr -d '\r' | iconv -f cp1252 -t utf-8; }

step "wine prefix"
wineboot -i >/dev/null 2>&1
# bcryptprimitives.dll (ProcessPrng), which cryptography's Rust code imports: Windows 10+ has it, wine 8.0 not.
python3 scripts/wine_shims.py "$WINEPREFIX/drive_c/windows/system32"
user_dir="$WINEPREFIX/drive_c/users/$(whoami)"
install_dir="$user_dir/AppData/Local/Programs/Relais"
data_dir="$user_dir/AppData/Local/relais"

step "silent install"
# RELAIS_NO_SYSTEMCTL=1: `relais install` writes the Run key but starts nothing (the demo below is started here).
RELAIS_NO_SYSTEMCTL=1 wine "$setup" /S </dev/null >/dev/null 2>&1 || fail "setup exited $?"
for f in relais.exe relaisw.exe uninstall.exe python/python.exe python/python313._pth; do
  [ -f "$install_dir/$f" ] || fail "$f not installed in $install_dir"
done
relais="$install_dir/relais.exe"
run_key=$(win reg query 'HKCU\Software\Microsoft\Windows\CurrentVersion\Run' /v Relais)
grep -q 'relaisw.exe" run\|relaisw.exe run' <<<"$run_key" || fail "no Run value for the agent: $run_key"
win reg query 'HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\Relais' /v QuietUninstallString \
  | grep -q 'uninstall.exe' || fail "no Programs and Features entry"

step "relais --version"
version=$(win "$relais" --version)
[ "$version" = "relais $(project_version)" ] || fail "relais --version said: $version"
echo "$version"

step "relais doctor"
doctor=$(win "$relais" doctor || true)
echo "$doctor"
grep -q "dossier de données accessible en écriture" <<<"$doctor" || fail "doctor did not check the data folder"

step "relais demo: /v1/health"
port=$((20000 + RANDOM % 20000))
log=$(mktemp)
(win "$relais" demo --cards none --no-tray --port "$port" --peer-port $((port + 1)) >"$log") &
demo_pid=$!
health=""
for _ in $(seq 1 120); do
  health=$(curl -fsS "http://127.0.0.1:$port/v1/health" 2>/dev/null) && break
  kill -0 "$demo_pid" 2>/dev/null || break
  sleep 1
done
if [ -z "$health" ]; then
  cat "$log"
  fail "the demo agent did not answer /v1/health on port $port"
fi
echo "/v1/health: $health"
wineserver -k 2>/dev/null || true
wait "$demo_pid" 2>/dev/null || true
demo_pid=""

step "silent uninstall"
[ -d "$data_dir" ] || fail "no data folder at $data_dir before uninstalling"
uninstall() {  # $@: the uninstaller's options. It copies itself to %TEMP% and exits at once: wait for the copy.
  wine "$@" </dev/null >/dev/null 2>&1 || true  # its exit code is the launcher's; the checks below are the result
  wineserver -w
}
uninstall "$install_dir/uninstall.exe" /S
[ ! -e "$install_dir" ] || fail "the installation folder is still there after uninstall: $(ls "$install_dir")"
[ -d "$data_dir" ] || fail "the uninstaller removed the data folder"
if win reg query 'HKCU\Software\Microsoft\Windows\CurrentVersion\Run' /v Relais | grep -q relaisw; then
  fail "the Run value survived the uninstall"
fi
step "silent install for all users (/ALLUSERS)"
machine_dir="$WINEPREFIX/drive_c/Program Files/Relais"
RELAIS_NO_SYSTEMCTL=1 wine "$setup" /ALLUSERS /S </dev/null >/dev/null 2>&1 || fail "setup /ALLUSERS exited $?"
[ -f "$machine_dir/relais.exe" ] || fail "relais.exe not installed in Program Files"
run_key=$(win reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Run' /v Relais)
grep -q '"C:\\Program Files\\Relais\\relaisw.exe" run' <<<"$run_key" || fail "no machine Run value: $run_key"
[ "$(win "$machine_dir/relais.exe" --version)" = "relais $(project_version)" ] || fail "relais --version (all users)"
uninstall "$machine_dir/uninstall.exe" /ALLUSERS /S
[ ! -e "$machine_dir" ] || fail "Program Files\\Relais is still there after uninstall: $(ls "$machine_dir")"
if win reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Run' /v Relais | grep -q relaisw; then
  fail "the machine Run value survived the uninstall"
fi
step "smoke test passed"
