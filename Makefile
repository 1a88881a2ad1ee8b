# tokenbroker. `make test` is the test command (README); CI (.ci/run) runs it,
# then `make cross` and `make test-long`.
GO       ?= go
BUF      := $(GO) tool -modfile=tools/go.mod buf
BIN      := bin

# make install [PREFIX=/usr/local] [DESTDIR=staging root]. Units, sysusers.d
# and tmpfiles.d entries go under $(PREFIX)/lib, which systemd searches for
# PREFIX /usr and /usr/local alike; the units' ExecStart= names $(BINDIR).
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DOCDIR     ?= $(PREFIX)/share/doc/tokenbroker

.PHONY: all build test test-long test-systemd install install-units verify-units vet cross fmt-check lint proto proto-check bench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/brokerd ./cmd/brokerctl

# Formatting, vet (for Linux and macOS), buf lint, generated code
# freshness, the units' systemd-analyze verify, and every test that runs in
# seconds (the token lifecycle on a fake clock), race-enabled, inside a
# private Secret Service session. Under a minute on 2 cores once the build
# cache is warm. -p 4: most test binaries wait on sockets, processes and
# the fake IdP more than they compute, so four at once finish about a
# quarter sooner on 2 cores than the default of one per core.
test: fmt-check vet lint proto-check verify-units
	scripts/with-secret-service $(GO) test -race -count=1 -p 4 ./...

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

# Installs the binaries, the system and user units (ExecStart= pointing at
# $(BINDIR)), the brokerd user and group (sysusers.d), /run/brokerd's owner
# and mode (tmpfiles.d) and the system service's configuration, unless one
# is there already (the example always goes to $(DOCDIR)).
install: build install-units
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(BIN)/brokerd $(BIN)/brokerctl $(DESTDIR)$(BINDIR)/

# What install puts in place besides the binaries.
install-units:
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(USERUNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(SYSCONFDIR)/tokenbroker
	for u in systemd/system/brokerd.socket systemd/system/brokerd.service; do \
		sed 's|/usr/local/bin/|$(BINDIR)/|g; s|/etc/tokenbroker/|$(SYSCONFDIR)/tokenbroker/|' $$u | \
		install -m 0644 /dev/stdin $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; done
	for u in systemd/user/brokerd.socket systemd/user/brokerd.service; do \
		sed 's|/usr/local/bin/|$(BINDIR)/|g' $$u | \
		install -m 0644 /dev/stdin $(DESTDIR)$(USERUNITDIR)/$${u##*/} || exit 1; done
	install -m 0644 systemd/sysusers.d/brokerd.conf $(DESTDIR)$(SYSUSERSDIR)/brokerd.conf
	install -m 0644 systemd/tmpfiles.d/brokerd.conf $(DESTDIR)$(TMPFILESDIR)/brokerd.conf
	install -m 0644 systemd/brokerd.toml.example $(DESTDIR)$(DOCDIR)/brokerd.toml.example
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/tokenbroker/brokerd.toml ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/tokenbroker/brokerd.toml (the example is $(DESTDIR)$(DOCDIR)/brokerd.toml.example)"; \
	else sed 's|^keystore = "keyring"|keystore = "systemd"|' systemd/brokerd.toml.example | \
		install -m 0644 /dev/stdin $(DESTDIR)$(SYSCONFDIR)/tokenbroker/brokerd.toml; fi

# systemd-analyze verify of every unit as install-units writes it, with a
# stand-in for brokerd (test-systemd runs the real one). Needs
# systemd-analyze (package systemd); CI=true makes its absence an error.
verify-units:
	@scripts/verify-units

# The units under a real systemd 252 (PID 1 of a systemd-nspawn container):
# socket activation, notify readiness, an encrypted credential, a group
# member's brokerctl get, systemctl reload (applied and refused), the
# watchdog, stop. Root only; installs systemd-container and
# mmdebstrap when missing. About a minute the first time, seconds after.
test-systemd: build
	scripts/systemd-test

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
