#!/usr/bin/env bash
# Installs the Debian packages the project needs, only if some are missing.
# Runs as root on the kiosk image, a developer machine and CI alike.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer before installing
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections || true
if [ -t 1 ]; then
  # a person watches: apt's own progress bar (the first install takes minutes)
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends -o Dpkg::Progress-Fancy=1 "${missing[@]}"
else
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
