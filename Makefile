# pointpost: `make run` builds and serves with demo data; `make test` runs every test.
GO      ?= go
BIN     ?= bin/pointpost
export CGO_ENABLED = 1

.PHONY: run build test race generate check bench fmt clean

build:
	$(GO) build -o $(BIN) .

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
	git diff --exit-code -- '*_templ.go'

bench: build
	$(BIN) bench --consumers 100000
	$(GO) test -run '^$$' -bench . -benchtime 2x ./mailer/ ./postoffice/

fmt:
	gofmt -w .

clean:
	rm -rf bin
