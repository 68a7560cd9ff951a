#!/usr/bin/env bash
# Sign one Windows executable in place with osslsigncode (Authenticode, SHA-256): $1 the file. The certificate is
# the PKCS#12 file named by RELAIS_SIGN_PKCS12, its password in RELAIS_SIGN_PASSWORD; RELAIS_SIGN_TIMESTAMP, when
# set, is the RFC 3161 timestamp server (without one, the signature expires with the certificate).
set -euo pipefail
args=(sign -pkcs12 "$RELAIS_SIGN_PKCS12" -pass "${RELAIS_SIGN_PASSWORD:-}" -h sha256 -n "Relais"
      -in "$1" -out "$1.signed")
[ -z "${RELAIS_SIGN_TIMESTAMP:-}" ] || args+=(-ts "$RELAIS_SIGN_TIMESTAMP")
osslsigncode "${args[@]}" >/dev/null
mv -f "$1.signed" "$1"
