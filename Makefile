# pointpost: `make run` builds and serves with demo data; `make test` runs every test.
GO      ?= go
BIN     ?= bin/pointpost
export CGO_ENABLED = 1

.PHONY: run build test race generate check bench faults fuzz fmt clean

# The version `pointpost version` and the toolbox show; the build info adds the commit where
# the toolchain records it.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) .

run: build
	$(BIN) serve --demo

test:
	$(GO) vet ./...
	$(GO) test -race -timeout 20m ./...

generate:
	$(GO) tool templ generate

check: generate
	@test -z "$$(gofmt -l .)" || (gofmt -l . && echo "gofmt: files above need formatting" && exit 1)
	$(GO) vet ./...
	$(GO) mod tidy -diff
	git diff --exit-code -- '*_templ.go'

bench: build
	$(BIN) bench --consumers 100000
	@rate() { $(BIN) bench --consumers 3000 --relay-latency 10ms --json "$$@" | sed -E 's/.*"msgs_per_sec":([0-9.]+).*/\1/'; }; \
	p=$$(rate) && u=$$(rate --no-pipelining) && \
	printf 'relay 10 ms each way, 16 connections: pipelined %.0f msg/s, one command a round trip %.0f msg/s\n' $$p $$u
	$(GO) test -run '^$$' -bench . -benchtime 2x ./mailer/ ./postoffice/

# The fault tests, verbose, with their figures: a 100k-recipient job killed with SIGKILL at
# 20+ random moments (POINTPOST_FAULTS_SEED replays one), a relay that fails in every way,
# a locked database, and 10^5 mutated tokens.
faults:
	POINTPOST_FAULTS=1 $(GO) test -run 'TestCrash100k' -v -timeout 30m .
	$(GO) test -race -run 'TestRelayFaults|TestDatabaseLocked|TestHostileTokens|TestReceiverDatabase' -v ./mailer/ ./postoffice/

# Each fuzz target for FUZZTIME; new interesting inputs land in testdata/fuzz.
FUZZTIME ?= 60s
fuzz:
	@for pkg in ./postoffice/ ./mailer/ ./toolbox/; do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

fmt:
	gofmt -w .

clean:
	rm -rf bin
