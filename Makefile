# tokenbroker. `make test` is the test command (README); CI (.ci/run) runs it,
# then `make cross` and `make test-long`.
GO       ?= go
BUF      := $(GO) tool -modfile=tools/go.mod buf
BIN      := bin

.PHONY: all build test test-long vet cross fmt-check lint proto proto-check bench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/brokerd ./cmd/brokerctl

# Formatting, vet (for Linux and macOS), buf lint, generated code
# freshness, and every test that runs in seconds (the token lifecycle on a
# fake clock), race-enabled, inside a private Secret Service session. Under
# a minute on 2 cores once the build cache is warm.
test: fmt-check vet lint proto-check
	scripts/with-secret-service $(GO) test -race -count=1 ./...

# The real-time suites (build tag long): steady refresh with seconds-long
# tokens, the fault matrix over gRPC, revoked consent, the soak
# (SOAK_DURATION, default 2m), and a brokerd stopped past every refresh.
# About 4 minutes.
test-long:
	$(GO) vet -tags long ./...
	scripts/with-secret-service $(GO) test -race -count=1 -tags long -run '^TestLong' ./...

# Every package and its tests type-check and pass vet here and for macOS
# (Intel and Apple silicon).
DARWIN_ARCHS := amd64 arm64
vet:
	$(GO) vet ./...
	@for arch in $(DARWIN_ARCHS); do \
		echo "GOOS=darwin GOARCH=$$arch $(GO) vet ./..."; \
		GOOS=darwin GOARCH=$$arch $(GO) vet ./... || exit 1; \
	done

# Both binaries build and link for macOS on Intel and Apple silicon. CI
# runs it; `make test` runs only the darwin vet, which type-checks the same
# code in a second, where linking takes several. Nothing is run: that needs
# a Mac.
cross:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	for arch in $(DARWIN_ARCHS); do \
		echo "GOOS=darwin GOARCH=$$arch go build ./cmd/brokerd ./cmd/brokerctl"; \
		GOOS=darwin GOARCH=$$arch $(GO) build -o $$tmp/ ./cmd/brokerd ./cmd/brokerctl || exit 1; \
	done

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
