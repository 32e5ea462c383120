#!/usr/bin/env bash
# Runs custosd on its embedded default: a SoftHSM token and SQLite state under
# ./var/dev. On a fresh Debian 12 machine this installs what is missing,
# builds, makes the dev deployment if absent and runs custosd in the foreground.
#   scripts/run.sh [--port N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT=7443
if [ "${1:-}" = "--port" ] && [ -n "${2:-}" ]; then PORT="$2"; fi
"$ROOT/scripts/build.sh" "$ROOT/build"
BIN="$ROOT/build/bin"
DEV="$ROOT/var/dev"
if [ ! -f "$DEV/custosd.conf" ]; then
  mkdir -p "$ROOT/var"
  "$BIN/custos-init" dev --dir "$DEV" --port "$PORT" >/dev/null
  echo "run.sh: made a dev deployment in $DEV"
fi
cat <<MSG

================================================================================
custosd is starting on its dev deployment ($DEV).
From another terminal, create a key (as admin), then sign and verify a file
(as builder) — the file never leaves your machine, only its SHA-256 does:

  $BIN/custos --config $DEV/clients/admin.conf keys create demo --type ec-p256 --usage code-signing
  echo hello > /tmp/hello.txt
  $BIN/custos --config $DEV/clients/builder.conf sign --key demo --in /tmp/hello.txt --out /tmp/hello.sig
  $BIN/custos --config $DEV/clients/builder.conf verify --key demo --in /tmp/hello.txt --sig /tmp/hello.sig
  $BIN/custos --config $DEV/clients/builder.conf keys pubkey demo --out /tmp/demo.pem
  openssl dgst -sha256 -verify /tmp/demo.pem -signature /tmp/hello.sig /tmp/hello.txt

Stop with Ctrl-C (in-flight requests are drained).
================================================================================

MSG
exec "$BIN/custosd" --config "$DEV/custosd.conf"
