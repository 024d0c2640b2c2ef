# psavd — see README.md. `make run` builds the lab and shows PSAV at work;
# `make test` runs every test (root needed for the AF_XDP and namespace tests).

GO        ?= go
BIN       := bin
# What --version says: the nearest v* tag (v0.0.0-dev without one) and the
# commit, set with -X (the module cache build has neither).
VERSION   ?= $(shell git describe --tags --match 'v*' --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X github.com/psavd/psavd/internal/buildinfo.Version=$(VERSION) -X github.com/psavd/psavd/internal/buildinfo.Commit=$(COMMIT)

.PHONY: all build fresh-check run run-static run-lisp run-decent-push run-decent-pull run-hierarchy test deps lint fuzz bench-engine bench-xdp proto clean install deb man completion

all: build

# Every binary the README names.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/psavd ./cmd/psavctl ./cmd/psavbench ./cmd/psavlab

# The lab: namespaces, veths, two ABRs on AF_XDP, legitimate and spoofed
# traffic. No key is configured: each ABR also runs its AS's ACS, and the keys
# are negotiated over mutual TLS 1.3 (deploy/lab/default.toml).
run: deps build
	$(BIN)/psavd lab

# The same lab with static keys and no ACS (deploy/lab/static.toml).
run-static: deps build
	$(BIN)/psavd lab -topology deploy/lab/static.toml

# The ABRs as LISP xTRs with a Map-Server/Map-Resolver node: tagged packets
# encapsulated across the transit (deploy/lab/lisp.toml).
run-lisp: deps build
	$(BIN)/psavd lab -topology deploy/lab/lisp.toml

# The LISP lab with mappings from LISP-Decent only: push (a registration
# group) and pull (map-server names over DNS-over-TLS).
run-decent-push: deps build
	$(BIN)/psavd lab -topology deploy/lab/decent-push.toml

run-decent-pull: deps build
	$(BIN)/psavd lab -topology deploy/lab/decent-pull.toml

# Four ASes in a two-level community tree: tags replaced at the community
# borders (deploy/lab/hierarchy.toml).
run-hierarchy: deps build
	$(BIN)/psavd lab -topology deploy/lab/hierarchy.toml

# Everything CI checks: formatting, vet, staticcheck, and all tests with the
# race detector (the AF_XDP/namespace tests skip cleanly without root). One
# package at a time: the namespace tests send real traffic and must not
# compete for the 2 CPUs with each other. PSAVD_REQUIRE_TOOLS=1: a real peer
# (tshark, BIND, kdig, stayrtr, …) that deps should have installed fails the
# test that needs it instead of skipping it.
test: deps fresh-check lint
	PSAVD_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -p 1 -timeout 20m ./...

# The Debian packages the tests use (real peers and decoders), installed only
# when missing; the one list is tools/debian-packages.txt.
deps:
	tools/deps.sh

# Proves the tools install from nothing (tools/fresh-check.sh): pinned by
# module version, built with an empty GOBIN and a GOPATH of its own.
fresh-check:
	tools/fresh-check.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Short fuzzing of every wire parser (the seed corpora run in `make test`).
# Every fuzz target of every package (go test -list finds them), FUZZTIME
# each; the seed corpora already run in `make test`.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test $$pkg -run XXX -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s; \
		done; \
	done

# Per-packet cost of the engine on the mem port (docs/perf.md).
bench-engine:
	$(GO) test ./engine -run XXX -bench Pipeline -benchtime 2s -count 3

# Packets per second through one ABR on veths: bare AF_XDP forwarder vs psavd
# tagging and validating, with the ratios (docs/perf.md). Root; ~2 minutes.
bench-xdp: build
	$(GO) run ./bench/cmd/fwdbench -psavd $(BIN)/psavd -cases afxdp-bare,psavd-tag,psavd-validate -runs 5 -duration 4s -warmup 2s

# Map-Registers → Map-Notifies per second, psavd's Map-Server against OOR's
# in the same run, table grown to 1 M, idle CPU (docs/perf.md). Root; ~1 min.
.PHONY: bench-mapserver
bench-mapserver: build
	$(GO) run ./bench/cmd/msbench -psavd $(BIN)/psavd

# The benchmark harness (not part of `make test`): sweeps of packet size, mix,
# AS-Prefix table size and cores from bench/scenarios/$(SCENARIO).toml, psavd
# against the same-run bare AF_XDP forwarder and kernel forwarding; JSON,
# Markdown report and SVG charts in bench/results/<date-time>/. Root; the
# default scenario takes about 6 minutes. PUBLISH=docs/bench copies the report.
SCENARIO ?= default
.PHONY: bench
bench: build
	$(BIN)/psavbench -psavd $(BIN)/psavd -scenario bench/scenarios/$(SCENARIO).toml $(if $(PUBLISH),-publish $(PUBLISH))

# Regenerate control/acspb and control/mgmtpb from their schemas (generated
# code is committed).
proto:
	@command -v protoc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	GOFLAGS= $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
	GOFLAGS= $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	protoc --proto_path=control/acspb --go_out=control/acspb --go_opt=paths=source_relative \
		--go-grpc_out=control/acspb --go-grpc_opt=paths=source_relative control/acspb/acs.proto
	protoc --proto_path=control/mgmtpb --proto_path=control/acspb \
		--go_out=control/mgmtpb --go_opt=paths=source_relative --go_opt=Macs.proto=github.com/psavd/psavd/control/acspb \
		--go-grpc_out=control/mgmtpb --go-grpc_opt=paths=source_relative --go-grpc_opt=Macs.proto=github.com/psavd/psavd/control/acspb \
		control/mgmtpb/mgmt.proto

# Install psavd and psavctl, the systemd unit, the sysusers.d entry that
# creates the psavd user, an example configuration, the docs, psavctl's man
# pages and its bash, zsh and fish completions (deploy/README.md).
# Everything but the configuration goes under $(PREFIX): systemd reads units
# and sysusers.d from /usr/local/lib as well as /usr/lib, and bash, zsh and
# fish their completions from /usr/local/share, so the default PREFIX needs
# no other path. The unit names /usr/bin/psavd
# (the .deb's path): the installed copy names $(PREFIX)/bin/psavd. As root:
#   make build && sudo make install && sudo systemd-sysusers && sudo systemctl daemon-reload
PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DOCDIR     ?= $(PREFIX)/share/doc/psavd
MANDIR     ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
DOCS       := README.md deploy/README.md docs/config.md docs/wire.md docs/join.md LICENSE
install: $(BIN)/psavd $(BIN)/psavctl man completion
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(SYSCONFDIR)/psavd $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 $(BIN)/psavd $(BIN)/psavctl $(DESTDIR)$(PREFIX)/bin/
	sed -e 's#/usr/bin/psavd#$(PREFIX)/bin/psavd#g' -e 's#/usr/share/doc/psavd#$(DOCDIR)#g' \
		-e 's#/etc/psavd/#$(SYSCONFDIR)/psavd/#g' deploy/systemd/psavd.service >$(DESTDIR)$(UNITDIR)/psavd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/psavd.service
	install -m 0644 deploy/systemd/psavd.sysusers $(DESTDIR)$(SYSUSERSDIR)/psavd.conf
	install -m 0644 deploy/examples/static-pair-as65001.toml $(DESTDIR)$(SYSCONFDIR)/psavd/engine.toml.example
	install -m 0644 README.md docs/config.md docs/wire.md docs/join.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 deploy/README.md $(DESTDIR)$(DOCDIR)/deploy.md
	install -m 0644 LICENSE $(DESTDIR)$(DOCDIR)/copyright
	install -m 0644 $(BIN)/man/*.1.gz $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(BIN)/completion/psavctl $(DESTDIR)$(BASHCOMPDIR)/psavctl
	install -m 0644 $(BIN)/completion/_psavctl $(DESTDIR)$(ZSHCOMPDIR)/_psavctl
	install -m 0644 $(BIN)/completion/psavctl.fish $(DESTDIR)$(FISHCOMPDIR)/psavctl.fish

$(BIN)/psavd $(BIN)/psavctl:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/psavd ./cmd/psavctl

# psavctl's man pages (section 1, gzipped as Debian wants them) and its bash,
# zsh and fish completions, in $(BIN)/man and $(BIN)/completion: generated
# by the binary from the command tree its --help prints (psavctl gen-man,
# psavctl completion), so none is committed and none can go stale. The pages
# carry the commit's date (SOURCE_DATE_EPOCH): the same tree, the same bytes.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
man: $(BIN)/psavctl
	rm -rf $(BIN)/man
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BIN)/psavctl gen-man -dir $(BIN)/man
	gzip -9n $(BIN)/man/*.1

completion: $(BIN)/psavctl
	mkdir -p $(BIN)/completion
	$(BIN)/psavctl completion bash >$(BIN)/completion/psavctl
	$(BIN)/psavctl completion zsh >$(BIN)/completion/_psavctl
	$(BIN)/psavctl completion fish >$(BIN)/completion/psavctl.fish

# The Debian package bin/psavd_<version>_amd64.deb (deploy/nfpm.yaml): nfpm
# is a go.mod tool, pinned by module version. The version is VERSION without
# its leading v. Freshly built binaries: a stale bin/psavd would not do.
DEBVERSION := $(patsubst v%,%,$(VERSION))
deb:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/psavd ./cmd/psavctl
	$(MAKE) --no-print-directory man completion
	PSAVD_VERSION=$(DEBVERSION) PSAVD_BIN=$(BIN) $(GO) tool nfpm pkg --config deploy/nfpm.yaml --packager deb --target $(BIN)/psavd_$(DEBVERSION)_amd64.deb

clean:
	rm -rf $(BIN)
