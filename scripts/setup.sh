#!/usr/bin/env bash
# Installs everything overlayd needs on a fresh Debian machine: the Debian
# packages (kernel tools used by tests and the demo) and a venv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(iproute2 nftables iputils-ping iperf3 tcpdump systemd curl procps user-mode-linux kmod util-linux)
missing=()
for d in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || missing+=("$d")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  echo "setup: creating .venv and installing Python dependencies"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
