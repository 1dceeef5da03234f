# headtune: transfer learning on images with frozen ONNX backbones and pure-Go heads.
#
#   make demo    the whole job offline on a fresh machine (setup included)
#   make test    set up (peers, data and emulators too) and run the test suite (what CI runs)

GO        ?= go
SHELL     := bash
BIN       := bin/headtune
ORT_VERSION ?= 1.24.1
export ORT_VERSION
# Tests and the binary find ONNX Runtime in .deps/ by themselves; exporting
# the path keeps subprocesses (scripts, python) on the same library.
export HEADTUNE_ORT_LIB ?= $(CURDIR)/.deps/onnxruntime-$(ORT_VERSION)/libonnxruntime.so.1

.PHONY: all setup setup-test build test test-short bench fuzz demo clean

all: build

setup:
	@./scripts/setup.sh

# What the tests need beyond setup: Debian peers and data (as root), the
# onnxruntime-node package and Azurite (see the script).
setup-test: setup
	@./scripts/setup-test.sh

build:
	$(GO) build -o $(BIN) ./cmd/headtune

# The test run ends with the list of skipped tests and why (plain `go test`
# hides skips); under CI=true a skip for a missing asset is a failure.
test: setup-test
	$(GO) vet ./...
	# The object-storage drivers behind build tags must keep compiling.
	$(GO) vet -tags nos3 ./...
	$(GO) vet -tags gcs,azure ./objstore/... ./pipeline ./e2e
	# The reference Kubernetes manifest, decoded strictly into batch/v1 types
	# (its own module, so the binary does not link k8s.io/api).
	cd deploy/k8stest && $(GO) test -count=1 ./...
	$(GO) build -o .deps/testreport ./scripts/testreport
	set -o pipefail; $(GO) test -count=1 -timeout 20m -json ./... | .deps/testreport
	# GCS and Azure against their fakes on 127.0.0.1 (fake-gcs-server in the
	# test process; Azurite, from scripts/setup-azurite.sh, run with node):
	# the objstore conformance tests and plan/extract/merge round trips, in
	# the library and through a binary built with the tags.
	set -o pipefail; $(GO) test -count=1 -timeout 10m -tags gcs,azure -json ./objstore/... | .deps/testreport
	set -o pipefail; $(GO) test -count=1 -timeout 10m -tags gcs,azure -run '^Test(GCS|Azure)' -json ./pipeline ./e2e | .deps/testreport
	./scripts/fuzz-smoke.sh

test-short:
	$(GO) test -short -count=1 ./...

bench: setup build
	./scripts/bench.sh

fuzz:
	FUZZTIME=60s ./scripts/fuzz-smoke.sh

demo: setup build
	./scripts/demo.sh

clean:
	rm -rf bin demo-out
