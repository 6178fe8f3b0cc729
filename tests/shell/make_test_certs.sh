#!/usr/bin/env bash
# Makes the certificates the TLS tests use, in the directory given (created if missing):
#   ca.pem, ca.key              a CA
#   server.pem, server.key      a server certificate the CA signed, for localhost and 127.0.0.1
#                               (its subjectAltName: what clients check)
#   client.pem, client.key      a client certificate the CA signed (extendedKeyUsage clientAuth)
#   other_ca.pem, other_ca.key  a second CA, which signed nothing of ours
# Each is valid for one day. Needs the openssl command (Debian's openssl, from tools/setup.sh).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
cd "$1"
new_key_and_request() {  # NAME SUBJECT
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
}
sign() {  # NAME EXTENSIONS
  printf '%s\n' "$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -out "$1.pem" -extfile "$1.ext" 2>/dev/null
}
for ca in ca other_ca; do
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "${ca}.key" -out "${ca}.pem" -days 1 \
    -subj "/CN=mpigate-test-${ca}" 2>/dev/null
done
new_key_and_request server /CN=localhost
sign server 'subjectAltName=DNS:localhost,IP:127.0.0.1'
new_key_and_request client /CN=mpigate-test-client
sign client 'extendedKeyUsage=clientAuth'
