# spanflow — build, test and measure. `make help` lists the targets.
GO       ?= go
BIN      ?= bin/spanflow
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 15s
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE     ?= $(shell date -u -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s) +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

SHELL := /bin/bash

.PHONY: help build release test test-short lint bench soak fuzz demo clean es-start es-stop

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

build: ## build bin/spanflow
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/spanflow

release: ## static binaries for linux/amd64 and arm64, .deb and .rpm packages, SBOM and SHA256SUMS in dist/ (docs/install.md)
	VERSION=$(VERSION) COMMIT=$(COMMIT) scripts/release

# Every test, with the race detector, against a real Elasticsearch and a real
# Kafka broker: those at SPANFLOW_ES_URL and SPANFLOW_KAFKA_BROKERS when set,
# else ones started (and stopped) by scripts/elasticsearch and scripts/kafka.
GOTEST := $(GO) test -race -count=1 -timeout 30m -json ./... 2>&1 | scripts/test-summary
KAFKA_RUN = $(if $(SPANFLOW_KAFKA_BROKERS),,scripts/kafka run)
test: ## run all tests (race detector, real Elasticsearch and Kafka, peers from Debian)
	@set -o pipefail; if [ -n "$$SPANFLOW_ES_URL" ]; then \
		$(KAFKA_RUN) sh -c '$(GOTEST)' ; \
	else \
		scripts/elasticsearch run $(KAFKA_RUN) sh -c '$(GOTEST)' ; \
	fi

test-short: ## quick tests only: no services, no peers
	$(GO) test -short ./...

lint: ## gofmt, go vet, a build for macOS (the CLI's reports and setup run there too) and one for 32-bit Linux
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/spanflow
	GOARCH=386 $(GO) build -o /dev/null ./cmd/spanflow

bench: ## micro-benchmarks beside the code, then the whole-process comparisons under bench/ (not the soak)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	@for s in bench/*.sh; do [ -x "$$s" ] && [ "$$s" != bench/soak.sh ] || continue; echo "== $$s"; "$$s" || exit 1; done

soak: ## the collector under valid and hostile datagrams for DURATION (default 1h), memory and counters every minute
	bench/soak.sh

fuzz: ## run every fuzz target for FUZZTIME each
	scripts/fuzz $(FUZZTIME)

# The first build compiles every dependency (minutes on a 2-core machine):
# say so at once, and count the packages as they compile, rather than
# `go run`, which is silent until the demo starts. DEMO_ARGS go to the demo.
DEMO_ARGS ?=
demo: ## build bin/spanflow (the first build takes minutes, later ones seconds), then run the whole pipeline on this machine
	@echo "spanflow demo: building $(BIN) (the first build compiles every dependency: 5 to 10 minutes on a 2-core machine; later runs start in seconds)..."
	@set -o pipefail; $(GO) build -v -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/spanflow 2>&1 | \
		scripts/build-progress "$$($(GO) list -deps ./cmd/spanflow 2>/dev/null | wc -l)"
	$(BIN) demo $(DEMO_ARGS)

es-start: ## start the test Elasticsearch (prints its URL)
	scripts/elasticsearch start

es-stop: ## stop the test Elasticsearch
	scripts/elasticsearch stop

clean:
	rm -rf bin dist
