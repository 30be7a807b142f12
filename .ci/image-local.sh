#!/usr/bin/env bash
# Makes the image qufop/qufop:dev (IMAGE=... to change it) from bin/qufop
# (`make build`) without pulling anything: a FROM scratch image holding the
# binary, the shared libraries `ldd` lists for it (and the dynamic loader),
# the libvips loader modules with theirs, the host's CA certificates, and a
# non-root user. The Dockerfile at the root makes the same image from
# golang and debian base images where those can be pulled.
#
# The libraries come from this machine: run it on the Debian release the
# image's users expect (the binary was linked against it anyway). Needs a
# running dockerd (bash .ci/services.sh starts one).
#
# `bash .ci/image-local.sh registry` makes local/docker-registry:2.8 (IMAGE=...
# to change it) the same way from Debian's docker-registry (REGISTRY_BIN,
# default /usr/bin/docker-registry), the image jobspecs/registry.nomad.hcl
# runs by default.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = registry ]; then
  IMAGE=${IMAGE:-local/docker-registry:2.8}
  REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
  [ -x "$REGISTRY_BIN" ] || { echo "image-local: $REGISTRY_BIN is missing: apt-get install docker-registry" >&2; exit 1; }
  docker info >/dev/null 2>&1 || { echo "image-local: Docker is not running (bash .ci/services.sh starts it)" >&2; exit 1; }
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/tmp"
  # Kept at /usr/bin/docker-registry, the job's default entrypoint; the job
  # supplies the config.
  cp "$REGISTRY_BIN" "$ctx/rootfs/usr/bin/docker-registry"
  ldd "$REGISTRY_BIN" 2>/dev/null | grep -o '/[^ )]*' | sort -u | while read -r lib; do
    cp --parents -L "$lib" "$ctx/rootfs/"
  done
  chmod 1777 "$ctx/rootfs/tmp"
  printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/bin:/bin\n' >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" >/dev/null
  out=$(docker run --rm --entrypoint /usr/bin/docker-registry "$IMAGE" --version)
  case $out in
    *"docker-registry github.com/"*) ;;
    *) echo "image-local: $IMAGE --version printed: $out" >&2; exit 1 ;;
  esac
  echo "image-local: $IMAGE ($out)"
  exit 0
fi

IMAGE=${IMAGE:-qufop/qufop:dev}
BIN=${BIN:-bin/qufop}
UID_GID=10001

[ -x "$BIN" ] || { echo "image-local: $BIN is missing: run make build" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "image-local: Docker is not running (bash .ci/services.sh starts it)" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$ctx/home"
cp "$BIN" "$root/usr/local/bin/qufop"

# libvips loads its format modules (HEIF, JPEG XL, PDF, ...) at run time:
# they are not in the binary's ldd output, so copy them and what they link.
modules=()
for d in /usr/lib/*/vips-modules-*; do
  [ -d "$d" ] && modules+=("$d")
done
objects=("$BIN")
for d in "${modules[@]}"; do
  objects+=("$d"/*.so)
done
# Every absolute path ldd prints: the libraries and the loader (the path
# written in the binary, e.g. /lib64/ld-linux-x86-64.so.2). -L copies the
# files behind the symlinks, under the names the binary asks for.
for f in "${objects[@]}"; do ldd "$f"; done | grep -o '/[^ )]*' | sort -u | while read -r lib; do
  cp --parents -L "$lib" "$root/"
done
for d in "${modules[@]}"; do
  cp -r --parents "$d" "$root/"
done

# TLS to S3-compatible and HTTP-origin buckets.
if [ -d /etc/ssl/certs ]; then
  mkdir -p "$root/etc/ssl"
  cp -rL /etc/ssl/certs "$root/etc/ssl/"
fi

# A user for the processes (not root: libvips reads untrusted inputs), a
# world-writable /tmp for Go and libvips temporary files.
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nqufop:x:%s:%s:qufop:/var/lib/qufop:/usr/sbin/nologin\n' $UID_GID $UID_GID >"$root/etc/passwd"
printf 'root:x:0:\nqufop:x:%s:\n' $UID_GID >"$root/etc/group"
chmod 1777 "$root/tmp"

version=$("$BIN" --version 2>/dev/null | awk '{print $NF}')
cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
COPY --chown=$UID_GID:$UID_GID home/ /var/lib/qufop/
ENV PATH=/usr/local/bin:/usr/bin:/bin
LABEL org.opencontainers.image.title=qufop org.opencontainers.image.version=$version
USER $UID_GID:$UID_GID
WORKDIR /var/lib/qufop
ENTRYPOINT ["qufop"]
CMD ["--help"]
EOF
# The classic builder: FROM scratch pulls nothing, and it needs no buildx.
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" >/dev/null

# The image must start the binary (every library found) as its user.
out=$(docker run --rm "$IMAGE" --version)
case $out in
  "qufop version "*) ;;
  *) echo "image-local: $IMAGE --version printed: $out" >&2; exit 1 ;;
esac
docker run --rm "$IMAGE" --help >/dev/null
docker run --rm --entrypoint /usr/local/bin/qufop "$IMAGE" gateway --help >/dev/null
echo "image-local: $IMAGE ($out, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
