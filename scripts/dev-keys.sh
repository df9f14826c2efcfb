#!/usr/bin/env bash
# The development signing keys for update bundles of the emulated board,
# made once in $VIGIL_CACHE_DIR/keys (default ~/.cache/vigil/keys), never in
# git: a CA (the keyring `make image-qemu` puts in the image as
# /etc/rauc/ca.cert.pem) and a signing certificate issued by it
# (`make bundle` signs with it). Anyone with this directory can make
# bundles the emulated board accepts, and nothing else: products have their
# own CA, kept elsewhere (docs/ota.md, "Keys").
#
# Idempotent: keys that exist are never made again (bundles already built
# and images already made keep working); a missing signing certificate is
# issued again by the existing CA; a signing key without its CA is an error.
# The file names are those Yocto's VIGIL_KEYS_DIR expects (docs/yocto.md).
#
# usage: scripts/dev-keys.sh     prints the directory on stdout
#   ca.cert.pem ca.key.pem       the CA (CA:TRUE, keyCertSign)
#   signing.cert.pem signing.key.pem  the signer (digitalSignature)
set -euo pipefail
DIR=${VIGIL_CACHE_DIR:-${HOME:-/root}/.cache/vigil}/keys
DAYS=3650

log() { printf 'dev-keys: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
command -v openssl >/dev/null || die "openssl is missing (make deps-board)"

mkdir -p "$DIR"
chmod 700 "$DIR"
# Created in a temporary directory next to the keys and renamed into place,
# so an interrupted run leaves either nothing or a whole file.
tmp=$(mktemp -d "$DIR/.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$DIR/ca.cert.pem" ] || [ ! -f "$DIR/ca.key.pem" ]; then
  if [ -f "$DIR/ca.cert.pem" ] || [ -f "$DIR/ca.key.pem" ] || [ -f "$DIR/signing.key.pem" ]; then
    die "$DIR holds part of a key set (no CA certificate or key); remove the directory to start again"
  fi
  log "creating the development CA in $DIR"
  openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days "$DAYS" \
    -subj "/O=vigil development/CN=vigil development CA (emulated board only)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tmp/ca.key.pem" -out "$tmp/ca.cert.pem" 2>/dev/null
  chmod 600 "$tmp/ca.key.pem"
  mv "$tmp/ca.key.pem" "$DIR/ca.key.pem"
  mv "$tmp/ca.cert.pem" "$DIR/ca.cert.pem"
fi

if [ ! -f "$DIR/signing.cert.pem" ] || [ ! -f "$DIR/signing.key.pem" ]; then
  log "issuing the development signing certificate in $DIR"
  [ -f "$DIR/signing.key.pem" ] && cp "$DIR/signing.key.pem" "$tmp/signing.key.pem"
  [ -f "$tmp/signing.key.pem" ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 \
    -out "$tmp/signing.key.pem" 2>/dev/null
  chmod 600 "$tmp/signing.key.pem"
  openssl req -new -key "$tmp/signing.key.pem" -sha256 \
    -subj "/O=vigil development/CN=vigil development bundle signing" -out "$tmp/signing.csr"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" > "$tmp/ext.cnf"
  openssl x509 -req -in "$tmp/signing.csr" -CA "$DIR/ca.cert.pem" -CAkey "$DIR/ca.key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -sha256 -extfile "$tmp/ext.cnf" \
    -out "$tmp/signing.cert.pem" 2>/dev/null
  mv "$tmp/signing.key.pem" "$DIR/signing.key.pem"
  mv "$tmp/signing.cert.pem" "$DIR/signing.cert.pem"
fi

openssl verify -CAfile "$DIR/ca.cert.pem" "$DIR/signing.cert.pem" >/dev/null \
  || die "$DIR/signing.cert.pem is not issued by $DIR/ca.cert.pem; remove the directory to start again"
echo "$DIR"
