# The README's two commands: `make run` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/imbridge
DEV_PULL_TOKEN   ?= dev-pull-token
DEV_NATIVE_TOKEN ?= dev-native-token

.PHONY: run test build clickhouse vet fmt-check fuzz bench load

build:
	$(GO) build -o $(BIN) ./cmd/imbridge

# Installs clickhouse-server through apt when it is missing on a Debian machine.
clickhouse:
	@if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then \
		if [ -f /etc/debian_version ]; then \
			echo "installing clickhouse-server (apt)"; \
			SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
			$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null; \
		else \
			echo "clickhouse-server is missing: install it, or set IMBRIDGE_CLICKHOUSE_DSN / IMBRIDGE_TEST_CLICKHOUSE_DSN" >&2; exit 1; \
		fi; \
	fi

run: clickhouse build
	@echo "pull token (development): $(DEV_PULL_TOKEN)   native token: $(DEV_NATIVE_TOKEN)"
	IMBRIDGE_PULL_TOKEN=$${IMBRIDGE_PULL_TOKEN:-$(DEV_PULL_TOKEN)} \
	IMBRIDGE_SOURCES_NATIVE_TOKEN=$${IMBRIDGE_SOURCES_NATIVE_TOKEN:-$(DEV_NATIVE_TOKEN)} \
	./$(BIN) serve

test: clickhouse
	$(GO) test -race -count=1 -timeout 30m ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

fuzz:
	$(GO) test ./message -run '^$$' -fuzz FuzzDecodeLine -fuzztime 60s

bench:
	$(GO) test ./message -run '^$$' -bench . -benchmem

load: build
	$(GO) build -o bin/imbridge-load ./cmd/imbridge-load
	./bin/imbridge-load -binary $(BIN) -c 64
