# tokenbroker. `make test` is the one test command (README, .ci/run).
GO       ?= go
BUF      := $(GO) tool -modfile=tools/go.mod buf
BIN      := bin

.PHONY: all build test vet fmt-check lint proto proto-check bench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/brokerd ./cmd/brokerctl

# Everything CI runs: formatting, vet, buf lint, generated code freshness,
# and the race-enabled tests inside a private Secret Service session.
test: fmt-check vet lint proto-check
	scripts/with-secret-service $(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

lint:
	$(BUF) lint

# Regenerate the Go code from proto/ with the pinned buf and plugins.
proto:
	$(BUF) generate

# Fail when the committed generated code is not what `make proto` makes.
proto-check:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(BUF) generate --output $$tmp && \
	diff -r -x '*.proto' $$tmp/proto proto >/dev/null || \
	{ echo "generated code in proto/ is stale: run 'make proto' and commit"; exit 1; }

# The benchmark suite (bench/): one Markdown table, every figure measured in
# the same run as its baseline. About 5 minutes on 2 cores; BENCH_QUICK=1 for
# a short run, BENCH_* variables and flags as documented in bench/main.go.
# The Go benchmarks (go test -bench ./broker/server) are for profiling.
bench:
	$(GO) run ./bench -go $(GO)

clean:
	rm -rf $(BIN)
