#!/usr/bin/env bash
# Installs the Debian packages the build, `qufop dev` and the tests need,
# skipping those already installed. `make run`, `make test` and .ci/run call
# it, so that on a fresh machine those commands do all the set-up.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# OpenTofu v1.6.3 (MPL) for `make test-terraform-module`, built from the Go
# module proxy (about 3½ minutes on 2 cores) into /usr/local/bin as root, else
# $(go env GOPATH)/bin, where the Makefile also looks. A failed build is only
# a warning: the OpenTofu tests are then skipped, saying so. SKIP_TOFU=1 skips.
# Only the test targets ask for it (QUFOP_DEPS_TOFU=1): `make run` on a fresh
# machine need not wait for a Terraform tool.
tofu_version=v1.6.3
if [ -n "${QUFOP_DEPS_TOFU:-}" ] && [ -z "${SKIP_TOFU:-}" ] && command -v go >/dev/null &&
  ! command -v tofu >/dev/null && [ ! -x "$(go env GOPATH)/bin/tofu" ]; then
  gobin=$(go env GOPATH)/bin
  [ "$(id -u)" = 0 ] && gobin=/usr/local/bin
  echo "deps: building OpenTofu $tofu_version into $gobin"
  GOBIN=$gobin nice -n 10 go install "github.com/opentofu/opentofu/cmd/tofu@$tofu_version" ||
    echo "deps: warning: could not build OpenTofu $tofu_version; the OpenTofu tests will be skipped" >&2
fi

pkgs=(libvips-dev pkg-config gcc make git curl procps docker.io docker-registry busybox-static prometheus
  fonts-wqy-microhei # the CJK font of watermark text (docs/processing-urls.md#watermark)
  libdeflate-dev)    # PNG inflate of imageView2 (fop/image/vips/pngfast.c)
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
