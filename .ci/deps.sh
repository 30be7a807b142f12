#!/usr/bin/env bash
# Installs the Debian packages the build, `qufop dev` and the tests need,
# skipping those already installed. `make run`, `make test` and .ci/run call
# it, so that on a fresh machine those commands do all the set-up.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(libvips-dev pkg-config gcc make git curl procps docker.io docker-registry busybox-static prometheus
  fonts-wqy-microhei) # the CJK font of watermark text (docs/processing-urls.md#watermark)
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing Debian packages: ${need[*]} (run as root, or apt-get install them)" >&2
  exit 1
fi
echo "deps: installing ${need[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
