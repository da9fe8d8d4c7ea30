# Hookline. The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Every module of the workspace; ./... at the root does not work with go.work.
MODULES := $(shell sed -n 's/^\t\.\/\(.*\)$$/\1/p' go.work)
PROTOC_GEN_GO_VERSION := v1.36.12
# staticcheck 2026.2.2, the newest release, which supports Go 1.26.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
GOBIN := $(shell $(GO) env GOPATH)/bin
TEST_FLAGS ?= -count=1 -timeout 15m

.PHONY: fuzz run test test-deps vet lint fmt build build-standalone generate generate-check bench soak tidy monitoring

## run: the whole system locally (embedded NATS, a Redis, both services, a demo receiver)
run:
	@mkdir -p .data/bin
	$(GO) build -o .data/bin/devstack ./cmd/devstack
	@# Run the binary, not `go run`: go run reports an interrupted child as a failure.
	./.data/bin/devstack $(ARGS)

## test: install what Go cannot fetch, then run every test of every module
test: test-deps generate-check vet lint build-standalone
	$(GO) test $(TEST_FLAGS) $(addprefix ./,$(addsuffix /...,$(MODULES)))
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

## fuzz: a short run of every fuzz target (seed corpora under testdata/fuzz run in every `go test` too)
# A count, not a duration: with a duration Go 1.26's fuzz coordinator can
# report "context deadline exceeded" at the deadline on a busy machine
# (go.dev/issue/75804, fixed in Go 1.27). FUZZTIME=60s still works.
FUZZTIME ?= 20000x
FUZZ_TARGETS := ./pkg/signing:FuzzParseSignatureHeader ./pkg/ssrf:FuzzValidateURL \
	./pkg/subscription:FuzzMatches ./services/producer/internal/api:FuzzEventDecoder \
	./services/deliverer/internal/attempt:FuzzAttemptJSON ./pkg/jsoncheck:FuzzValid
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) $${t%%:*}; \
	done

## test-deps: redis-server, promtool (Debian's prometheus) and chromium (the portal's browser tests; and protoc for generate-check) through apt when missing
test-deps:
	@command -v redis-server >/dev/null || { echo "installing redis-server"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null
	@# promtool: tests/deploy checks and unit-tests deploy/monitoring/alerts.yaml with it.
	@command -v promtool >/dev/null || { echo "installing prometheus (promtool)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v promtool >/dev/null
	@# chromium: tests/portal drives the portal in Debian's headless Chromium (chromedp).
	@command -v chromium >/dev/null || { echo "installing chromium"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@command -v chromium >/dev/null

vet:
	$(GO) vet $(addprefix ./,$(addsuffix /...,$(MODULES)))

## lint: gofmt (nothing to reformat) and staticcheck (pinned) over every module
lint:
	@out="$$(gofmt -l $(MODULES))"; if [ -n "$$out" ]; then \
		echo "gofmt would reformat these files (run make fmt):"; echo "$$out"; exit 1; fi
	$(STATICCHECK) $(addprefix ./,$(addsuffix /...,$(MODULES)))

## fmt: gofmt every module in place
fmt:
	gofmt -w $(MODULES)

build:
	$(GO) build $(addprefix ./,$(addsuffix /...,$(MODULES)))

## build-standalone: every module builds on its own (GOWORK=off)
build-standalone:
	@set -e; for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) build ./... ); done

## generate: regenerate proto/gen from proto/*.proto (protoc from apt, protoc-gen-go pinned)
generate:
	@command -v protoc >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq protobuf-compiler >/dev/null; }
	GOBIN=$(GOBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	rm -rf proto/gen
	PATH=$(GOBIN):$$PATH protoc -I proto --go_out=proto --go_opt=module=github.com/hookline/hookline/proto proto/hookline/v1/*.proto

## generate-check: fails when regenerating changes anything
generate-check: generate
	@git diff --exit-code -- proto/gen || { echo "proto/gen is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto/gen)" || { echo "proto/gen has untracked files: run make generate and commit"; exit 1; }

## monitoring: regenerate what deploy/monitoring and k8s/components/monitoring derive (metric
## inventories, dashboard.json, the PrometheusRule); `make test` fails while any is stale
monitoring:
	cd services/deliverer && $(GO) test -count=1 ./internal/service -run '^TestMetricsInventory$$' -update-metrics
	cd services/producer && $(GO) test -count=1 ./internal/metrics -run '^TestMetricsInventory$$' -update-metrics
	cd tests && $(GO) test -count=1 ./deploy -run '^(TestDashboardIsCurrent|TestPrometheusRuleIsCurrent)$$' \
		-update-dashboard -update-prometheusrule

tidy:
	@for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) mod tidy); done

## bench: end-to-end benchmark on real processes (nats-server, redis-server, producer, deliverer,
## a sink): prints a table, writes JSON and a PNG chart under results/. BENCH_FLAGS="-events=5000 …"
bench: test-deps
	cd tests && $(GO) test ./bench -run '^$$' -bench '^BenchmarkPipeline$$' -benchtime 1x -count=1 -timeout 40m -args $(BENCH_FLAGS)

## soak: deliverer RSS over 10 minutes with 10,000 tasks in flight (not in CI). SOAK_FLAGS="-soak-duration=2m"
soak: test-deps
	cd tests && $(GO) test ./bench -run '^$$' -bench '^BenchmarkSoak$$' -benchtime 1x -count=1 -timeout 60m -args $(SOAK_FLAGS)
