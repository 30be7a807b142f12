# One binary, one test command. See README.md.
SHELL   := /bin/bash
GO      ?= go
BIN     ?= bin/qufop
# The Terraform provider (terraform/provider) and the version it is
# installed as in a filesystem mirror (Terraform wants a semantic version).
PROVIDER_BIN     ?= bin/terraform-provider-qufop
PROVIDER_VERSION ?= 0.1.0
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/qufop/qufop/cli.Version=$(VERSION)
PKGS    := ./...
FUZZTIME ?= 20s
PREFIX  ?= /usr/local

.PHONY: all deps build build-qufop build-provider provider-mirror install run test test-nomad test-terraform test-terraform-module vet fmt-check fuzz bench bench-ufop services clean

all: build

# Debian packages the build and the tests need (skipped when present;
# SKIP_DEPS=1 skips the check).
deps:
	@[ -n "$(SKIP_DEPS)" ] || bash .ci/deps.sh

# The test targets also build OpenTofu (.ci/deps.sh), for the Terraform
# module's tests; `make run` and `make build` do not wait for it.
test test-nomad test-terraform test-terraform-module: export QUFOP_DEPS_TOFU = 1

# The CLI and the Terraform provider.
build: build-qufop build-provider

build-qufop: deps
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/qufop

build-provider:
	$(GO) build -ldflags '-X main.version=$(PROVIDER_VERSION)' -o $(PROVIDER_BIN) ./cmd/terraform-provider-qufop

# The provider in a filesystem mirror under bin/terraform-mirror, for
# OpenTofu's and Terraform's registry hosts, and bin/terraformrc, a CLI
# configuration that installs qufop/qufop from there and every other
# provider as usual: export TF_CLI_CONFIG_FILE=$$PWD/bin/terraformrc
# (terraform/provider/README.md).
MIRROR ?= $(CURDIR)/bin/terraform-mirror

provider-mirror: build-provider
	@set -e; plat=$$($(GO) env GOOS)_$$($(GO) env GOARCH); \
	for host in registry.opentofu.org registry.terraform.io; do \
	  d=$(MIRROR)/$$host/qufop/qufop/$(PROVIDER_VERSION)/$$plat; mkdir -p $$d; \
	  cp $(PROVIDER_BIN) $$d/terraform-provider-qufop_v$(PROVIDER_VERSION); \
	done; \
	inc='"registry.opentofu.org/qufop/qufop", "registry.terraform.io/qufop/qufop"'; \
	printf 'provider_installation {\n  filesystem_mirror {\n    path    = "%s"\n    include = [%s]\n  }\n  direct {\n    exclude = [%s]\n  }\n}\n' \
	  "$(MIRROR)" "$$inc" "$$inc" > bin/terraformrc; \
	echo "qufop/qufop $(PROVIDER_VERSION) in $(MIRROR); now: export TF_CLI_CONFIG_FILE=$(CURDIR)/bin/terraformrc"

# The CLI on PATH: $(PREFIX)/bin/qufop (PREFIX=$$HOME/.local for no root).
install: build-qufop
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/qufop

# The whole platform on one machine, on embedded defaults.
run: build-qufop services
	./$(BIN) dev $(ARGS)

# Everything: formatting, vet, unit and end-to-end tests, fuzz seed corpora.
# It installs what is missing and starts dockerd and the registry first,
# lists every skipped test and why at the end, and then checks that the
# tests left nothing behind on the Docker daemon and in the registry.
test: deps services fmt-check vet test-terraform-module
	set -o pipefail; status=0; \
	$(GO) test -count=1 -json $(PKGS) | $(GO) run ./internal/testsummary || status=$$?; \
	bash .ci/leftovers.sh || status=1; \
	exit $$status

# The platform on real `nomad agent -dev` and `consul agent -dev` (v1.6.5 and
# v1.16.3 on PATH; skipped, saying so, without them), and a cluster of three
# servers and a client booted on loopback from the files that
# terraform/modules/nomad-cluster-config renders, and its other variants
# checked by `consul validate` / `nomad config validate` (also need tofu).
test-nomad: deps services
	set -o pipefail; status=0; \
	$(GO) test -count=1 -v -timeout 40m -run 'TestRealNomadAndConsul|TestRealNomadScaler|TestRealNomadScalingBlock|TestRealConsulLock|TestNomadPlatformJobs|TestJobspecsValidate|TestTerraformClusterConfigBoots|TestTerraformClusterConfigValidates' ./e2e || status=$$?; \
	bash .ci/leftovers.sh || status=1; \
	exit $$status

# terraform/modules/qufop-platform applied with a real Terraform CLI to a
# `nomad agent -dev` and `consul agent -dev` (TestTerraformPlatform): the
# four jobs up and healthy, the gateway and the management API answering,
# no secret in the jobs or their logs; then a UFOP deployed by a second
# root with terraform/provider (built by the test into the same offline
# mirror) and one by the qufop CLI answering processing URLs; destroy of
# the UFOP root removing its UFOP and job, destroy of the platform root
# removing the rest and leaving the CLI's ufop-* job alone.
# Needs nomad and consul on PATH, QUFOP_TERRAFORM (terraform 1.5.x or tofu;
# else terraform or tofu on PATH) and QUFOP_TF_MIRROR (a provider mirror
# holding hashicorp/nomad 2.x); prints SKIP and why without them.
test-terraform: deps services
	set -o pipefail; status=0; log=$$(mktemp); \
	$(GO) test -count=1 -v -timeout 30m -run '^TestTerraformPlatform$$' ./e2e 2>&1 | tee $$log || status=$$?; \
	sed -n 's/^ *[a-z_]*_test\.go:[0-9]*: skipping: /SKIP test-terraform: /p' $$log; rm -f $$log; \
	bash .ci/leftovers.sh || status=1; \
	exit $$status

# OpenTofu on the provider-free module terraform/modules/nomad-cluster-config:
# `tofu fmt -check` of terraform/ and its `tofu test` (plan-only runs, no
# provider, a few seconds). tofu from PATH or $(go env GOPATH)/bin, where
# .ci/deps.sh builds it; skipped, saying so, without it.
TOFU ?= $(shell command -v tofu 2>/dev/null || echo $$($(GO) env GOPATH)/bin/tofu)

test-terraform-module:
	@if [ ! -x "$(TOFU)" ]; then \
	  echo "SKIP test-terraform-module: no tofu on PATH or in \$$(go env GOPATH)/bin (.ci/deps.sh builds OpenTofu v1.6.3)"; exit 0; \
	fi; \
	set -e; export TF_CLI_CONFIG_FILE=/dev/null CHECKPOINT_DISABLE=1; \
	$(TOFU) version | head -1; \
	$(TOFU) fmt -check -recursive -diff terraform/; \
	cd terraform/modules/nomad-cluster-config && $(TOFU) test -no-color

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Short coverage-guided runs of every fuzz target (go test -fuzz takes one
# target of one package at a time). FuzzTarball unpacks on the file system
# (a few ms an exec when the machine is busy): with the default minimization
# budget of 60 s per new input, a run spends nearly all its time minimizing,
# so its minimization is capped at 100 execs.
fuzz:
	$(GO) test ./fop -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./fop/image -run='^$$' -fuzz='^FuzzGeometry$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./fop/image -run='^$$' -fuzz='^FuzzContainer$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./fop/image/vips -run='^$$' -fuzz='^FuzzPNGWhole$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./fop/image/vips -run='^$$' -fuzz='^FuzzScaleJPEG$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./storage/local -run='^$$' -fuzz='^FuzzKey$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./ufop -run='^$$' -fuzz='^FuzzParseSpec$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./ufop -run='^$$' -fuzz='^FuzzResponse$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./builder -run='^$$' -fuzz='^FuzzTarball$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=100x

# Benchmarks: in-process Go benchmarks, then the gateway under wrk on
# loopback against raw libvips in the same run (see bench/README.md).
bench: build-qufop
	bash bench/run.sh

bench-ufop: build-qufop
	bash bench/ufop.sh

# The image qufop/qufop:dev from bin/qufop, pulling nothing (FROM scratch
# with the libraries the binary links); the Dockerfile makes it where base
# images can be pulled. See jobspecs/README.md.
.PHONY: image-local
image-local: build-qufop services
	bash .ci/image-local.sh

# dockerd and Debian's docker-registry on 127.0.0.1:5000, as CI starts them.
services: deps
	@[ -n "$(SKIP_SERVICES)" ] || bash .ci/services.sh

clean:
	rm -rf bin
