#!/bin/sh
# Drives libcustos_faultp11.so with pkcs11-tool against a real SoftHSM token.
# Usage: faultp11_test.sh <libcustos_faultp11.so> <libsofthsm2.so> [sanitize ON/OFF]
set -eu
module=$1
export CUSTOS_FAULTP11_TARGET=$2
# A sanitized module needs its runtime loaded before pkcs11-tool starts.
case "${3:-OFF}" in
  ON|on|1|TRUE|true)
    LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libubsan.so)"
    export LD_PRELOAD ASAN_OPTIONS=detect_leaks=0 ;;
esac

dir=$(mktemp -d "${TMPDIR:-/tmp}/custos-faultp11-XXXXXX")
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$dir" > "$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
export CUSTOS_FAULTP11_CONTROL="$dir/control"
pin=5678  # throwaway test token; pkcs11-tool takes the PIN only as an argument
softhsm2-util --init-token --free --label faultp11 --so-pin 1234 --pin "$pin" > /dev/null

fail() { echo "FAIL: $*" >&2; exit 1; }
p11() { pkcs11-tool --module "$module" "$@"; }
count() { awk -v f="$1" '$1 == f { print $2 }' "$CUSTOS_FAULTP11_CONTROL.stats"; }

# An empty control file forwards everything.
: > "$CUSTOS_FAULTP11_CONTROL"
p11 --list-slots > "$dir/out" 2>&1 || fail "--list-slots: $(cat "$dir/out")"
grep -q 'token label *: faultp11' "$dir/out" || fail "--list-slots shows no token"
p11 --login --pin "$pin" --keypairgen --key-type EC:prime256v1 --label k1 \
  > "$dir/out" 2>&1 || fail "--keypairgen: $(cat "$dir/out")"
p11 --login --pin "$pin" --list-objects > "$dir/out" 2>&1 \
  || fail "--list-objects: $(cat "$dir/out")"
grep -q 'Private Key Object; EC' "$dir/out" || fail "--list-objects shows no key"
[ "$(count C_Login)" = 1 ] || fail "stats: C_Login count $(count C_Login), want 1"
[ "$(count C_Sign)" = 0 ] || fail "stats: C_Sign count $(count C_Sign), want 0"

# An injected CKR reaches the application.
echo 'fail C_Login CKR_PIN_LOCKED  # the token locked the PIN' > "$CUSTOS_FAULTP11_CONTROL"
if p11 --login --pin "$pin" --list-objects > "$dir/out" 2>&1; then
  fail "--login succeeded despite fail C_Login"
fi
grep -q 'CKR_PIN_LOCKED' "$dir/out" || fail "no CKR_PIN_LOCKED in: $(cat "$dir/out")"

# count=N: only the first call fails.
echo 'fail C_GetSlotList CKR_DEVICE_ERROR count=1' > "$CUSTOS_FAULTP11_CONTROL"
p11 --list-slots > "$dir/out" 2>&1 && fail "--list-slots succeeded despite fail C_GetSlotList"
grep -q 'CKR_DEVICE_ERROR' "$dir/out" || fail "no CKR_DEVICE_ERROR in: $(cat "$dir/out")"

# removed: no token present.
echo 'removed' > "$CUSTOS_FAULTP11_CONTROL"
p11 --list-token-slots > "$dir/out" 2>&1 || true
grep -q 'faultp11' "$dir/out" && fail "token listed while removed: $(cat "$dir/out")"

# Back again.
: > "$CUSTOS_FAULTP11_CONTROL"
p11 --list-token-slots > "$dir/out" 2>&1 || fail "--list-token-slots: $(cat "$dir/out")"
grep -q 'faultp11' "$dir/out" || fail "token not back: $(cat "$dir/out")"
echo "faultp11_test.sh: all passed"
