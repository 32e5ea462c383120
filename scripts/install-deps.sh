#!/usr/bin/env bash
# Installs the Debian 12 packages Custos needs to build, run and test.
# Idempotent: installs only what is missing. Works as root or through sudo.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  clang libclang-rt-14-dev
  libssl-dev openssl
  libp11-dev p11-kit libp11-kit-dev
  softhsm2 opensc gnutls-bin
  libnss3-tools  # certutil and vfychain: the CA tests verify chains with NSS
  libboost-dev libboost-program-options-dev
  libprotobuf-dev protobuf-compiler
  libsqlite3-dev
  libgtest-dev libgmock-dev
  tmux  # the officer console test drives custos-officer in a real terminal
  openssh-client openssh-server git  # ssh_test: ssh-keygen -L/-Y, an sshd login, git commit -S
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-deps: missing packages (${missing[*]}) and not root, no sudo available" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
