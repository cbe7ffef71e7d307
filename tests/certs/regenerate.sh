#!/usr/bin/env bash
# Regenerates the test-only CA and the certificates the integration tests use for TLS upstreams and the
# relay's own HTTPS listener. Test material only: these keys are public, never use them for anything real.
# Needs openssl. Run from anywhere: bash tests/certs/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")"
days=36500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
  -subj "/CN=RelayAPI Test CA" -keyout ca.key -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
issue() { # name, key type args, serial
  local name=$1 serial=$2; shift 2
  openssl req -newkey "$@" -nodes -subj "/CN=localhost" -keyout "$name.key" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -days $days -set_serial "$serial" -out "$name.pem" \
    -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n')
  rm "$name.csr"
}
issue server 1001 ec -pkeyopt ec_paramgen_curve:P-256
issue server-rsa 1002 rsa:2048
issue server2 1003 ec -pkeyopt ec_paramgen_curve:P-256
rm -f ca.srl
echo "regenerated test certificates in $(pwd)"
