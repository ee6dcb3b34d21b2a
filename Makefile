# logship. `make demo` and `make test` are the two commands of the README.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
FUZZTIME ?= 30s

PREFIX  ?= /usr/local

.PHONY: all build test test-race vet lint bench bench-e2e fuzz demo clean install

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/logship ./cmd/logship

# What CI runs: formatting, vet (integration tests included, so they always
# compile), and every test with the race detector.
test: lint
	$(GO) test -race -timeout 15m ./...

test-race: test

# The agent killed with SIGKILL at random points while 50,000 lines/s are
# written: SOAK_ROUNDS rounds (make test runs 2); then the aggregator
# stopped for 30 s under the same load (make test: 2 s).
.PHONY: soak
SOAK_ROUNDS ?= 10
soak:
	LOGSHIP_SOAK_ROUNDS=$(SOAK_ROUNDS) $(GO) test -race -count=1 -run '^TestSIGKILLSoak$$' -v ./agent/
	$(GO) test -race -count=1 -tags slow -run '^TestAggregatorStoppedAndRestarted$$' -v ./agent/

# The transport under load: 1,000 agent connections to one aggregator
# (make test runs 100), with the aggregator's heap per connection measured,
# and the chaos and failover tests again.
.PHONY: soak-transport
soak-transport:
	$(GO) test -race -count=1 -tags slow -run '^(TestConcurrentAgents|TestChaosExactlyOnce|TestFailoverAcrossAggregators)$$' -v ./aggregator/

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) vet -tags e2ebench ./cmd/logship
	$(GO) vet -tags slow ./aggregator ./agent

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The end-to-end benchmark: agent and aggregator processes on generated
# logs, beside cat | nc, for fsync always/interval and zstd/s2. Installs
# netcat for the baseline when it can. BENCH_ARGS="-lines 1000000 -sink";
# BENCH_ARGS="-profile /tmp/prof" also writes CPU profiles of both processes.
BENCH_ARGS ?=
bench-e2e:
	@command -v nc >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get install -y -qq netcat-openbsd >/dev/null 2>&1; } || echo "no nc: the baseline uses bash's /dev/tcp"
	$(GO) test -tags e2ebench -run TestBenchE2E -v -timeout 60m ./cmd/logship -args $(BENCH_ARGS)

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

demo:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/logship demo

# Installs the binary, the systemd units and, where none exists yet, the
# example configs (edit them: they point at /tmp) under DESTDIR.
install: build
	install -D -m 0755 bin/logship $(DESTDIR)$(PREFIX)/bin/logship
	install -d $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/logship
	install -m 0644 cmd/logship/systemd/*.service $(DESTDIR)/etc/systemd/system/
	@for r in agent aggregator sinks; do \
	  if [ -e $(DESTDIR)/etc/logship/$$r.toml ]; then echo "keeping $(DESTDIR)/etc/logship/$$r.toml"; \
	  else install -m 0644 testdata/config/$$r.toml $(DESTDIR)/etc/logship/$$r.toml; fi; \
	done

clean:
	rm -rf bin
