# The qufop image: the one binary for every role (gateway, builder, dev, the
# CLI verbs), on libvips. Build it where golang and debian images can be
# pulled:
#
#   docker build -t qufop/qufop:dev --build-arg VERSION=$(git describe --always --dirty) .
#
# Where no registry can be pulled from, `make image-local` makes an
# equivalent image from bin/qufop and the host's libraries (jobspecs/README.md).

# ---- build: cgo against libvips (fop/image/vips links it through pkg-config)
FROM golang:1.26-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvips-dev libdeflate-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath \
      -ldflags "-X github.com/qufop/qufop/cli.Version=${VERSION}" \
      -o /out/qufop ./cmd/qufop

# ---- run: the libvips runtime (its loader modules included) and CA
# certificates for S3-compatible and HTTP-origin buckets over TLS; a CJK font
# (WenQuanYi Micro Hei) for watermark text.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvips42 libdeflate0 ca-certificates fonts-wqy-microhei \
 && rm -rf /var/lib/apt/lists/*
# Not root: the gateway runs untrusted inputs through libvips. uid 10001 is
# also the uid UFOP images run as (builder's Dockerfile). The builder job
# runs this image as root instead, for the node's Docker socket.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/qufop \
      --create-home --shell /usr/sbin/nologin qufop
COPY --from=build /out/qufop /usr/local/bin/qufop
USER 10001:10001
WORKDIR /var/lib/qufop
ENTRYPOINT ["qufop"]
CMD ["--help"]
