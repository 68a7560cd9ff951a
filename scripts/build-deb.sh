#!/usr/bin/env bash
# Build dist/relais_<version>_amd64.deb for Debian 12 (bookworm): a venv under /opt/relais with the dependencies of
# installer/debian/requirements-amd64.txt (hashes checked) and Relais, /usr/bin/relais, the systemd user unit
# (enabled for every user) and the XDG autostart entry of the tray. Run on Debian 12 (the venv uses its python3.11).
# zstd compression: dpkg-deb's default xz takes minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-build.sh
lock=installer/debian/requirements-amd64.txt
check_lock "$lock"
# The venv links to Debian's own interpreter, the one the package depends on (not a pyenv or a /usr/local one).
DEB_PYTHON=/usr/bin/python3
"$DEB_PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "the .deb targets Debian 12: build it there, with /usr/bin/python3 (3.11)" >&2; exit 1; }
version=$(project_version)
work=build/deb
root="$work/root"
venv="$root/opt/relais"
started=$(date +%s)
rm -rf "$work"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/user" "$root/etc/xdg/autostart" dist

# The venv is built in the staging tree, then its absolute paths are moved to /opt/relais.
"$DEB_PYTHON" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-compile --use-pep517 --require-hashes -r "$lock"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-compile --no-deps .
"$venv/bin/pip" uninstall --quiet --yes pip
staged=$(cd "$venv" && pwd)
grep -rlI --null "$staged" "$venv" | xargs -0 -r sed -i "s|$staged|/opt/relais|g"
find "$venv" -name __pycache__ -prune -exec rm -rf {} +
ln -s /opt/relais/bin/relais "$root/usr/bin/relais"

# The same templates as `relais install --user`, for the packaged command.
for f in relais-agent.service:usr/lib/systemd/user relais-tray.desktop:etc/xdg/autostart; do
  sed -e 's|@RELAIS@|/opt/relais/bin/relais|' -e 's| @ARGS@||' "installer/linux/${f%%:*}" > "$root/${f#*:}/${f%%:*}"
done

size=$(du -sk "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@SIZE@|$size|" installer/debian/control > "$root/DEBIAN/control"
install -m 0755 installer/debian/postinst installer/debian/prerm "$root/DEBIAN/"
deb="dist/relais_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zzstd -z3 --build "$root" "$deb" >/dev/null
echo "$deb: $(du -h "$deb" | cut -f1), installed $(( size / 1024 )) MB, built in $(( $(date +%s) - started )) s"
