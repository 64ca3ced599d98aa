# Rapport developer tasks.
#
# Code generation runs offline: every tool is a `tool` in tools/go.mod (run
# with `go tool`, so it must run inside the go.work workspace), and the
# third-party .proto files are rebuilt from pinned Go modules into
# third_party/proto and committed (no buf.yaml deps).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
MAKEFLAGS += --no-builtin-rules

BUF  := go tool buf
SQLC := go tool sqlc

# Reference for `make breaking`; CI may pass e.g. AGAINST=.git\#ref=HEAD~1
# (clone depth >= 2). The reference must include third_party/proto.
AGAINST ?= .git\#branch=main

# Every module in go.work, as package patterns (`./...` does not work at the root).
MODULES = $(shell go list -m -f '{{.Dir}}/...')

# sqlc configs: every sqlc.yaml in the tree (a service may keep one per feature package).
SQLC_CONFIGS = $(shell find . \( -path ./.git -o -path ./.data -o -name node_modules \) -prune -o -name sqlc.yaml -print | sort)

# Committed generated output, as git pathspecs. A glob may match nothing; it
# must end in /* because git matches a glob against whole file paths.
GENERATED := third_party/proto pkg/gen pkg/openapi/gen '*/dbgen/*'

# Directories gofmt skips: generated code, VCS, build output, vendored JS.
GOFMT_PRUNE := -path ./.git -o -path ./bin -o -path ./pkg/gen -o -path ./pkg/openapi/gen \
	-o -name dbgen -o -name node_modules -o -name testdata

.PHONY: tools protodeps generate lint breaking check-generated

## tools: compile every tool in tools/go.mod into the build cache.
tools:
	go build tool

## protodeps: rebuild third_party/proto from the descriptors in pinned Go modules.
protodeps:
	go tool protodeps -out third_party/proto
	$(BUF) format -w third_party/proto

## generate: protos -> pkg/gen (Go, gRPC, gateway) and pkg/openapi/gen; then sqlc.
generate:
	$(BUF) generate
	@for cfg in $(SQLC_CONFIGS); do \
		echo "$(SQLC) generate -f $$cfg"; $(SQLC) generate -f "$$cfg"; \
	done

## lint: buf lint and format, gofmt on hand-written Go, go vet on every module.
lint:
	$(BUF) lint
	$(BUF) format --diff --exit-code
	@unformatted=$$(find . \( $(GOFMT_PRUNE) \) -prune -o -name '*.go' -type f -print0 \
		| xargs -0 -r gofmt -l); \
	if [[ -n "$$unformatted" ]]; then \
		echo "gofmt needed (run gofmt -w):"; echo "$$unformatted"; exit 1; \
	fi
	go vet $(MODULES)

## breaking: buf breaking against $(AGAINST); skipped if that git ref has no protos yet.
breaking:
	@against='$(AGAINST)'; \
	if [[ "$$against" == *.git\#* ]]; then \
		rev=; IFS=, read -ra opts <<< "$${against#*#}"; \
		for opt in "$${opts[@]}"; do \
			case "$$opt" in branch=*|ref=*|tag=*|commit=*) rev=$${opt#*=} ;; esac; \
		done; \
		if [[ -n "$$rev" ]] && ! git rev-parse -q --verify HEAD >/dev/null; then \
			echo "breaking: skipped, the repository has no commits yet"; exit 0; \
		fi; \
		if [[ -n "$$rev" ]] && ! git cat-file -e "$$rev:proto" 2>/dev/null; then \
			git rev-parse -q --verify "$$rev^{commit}" >/dev/null \
				|| { echo "breaking: unknown git ref '$$rev' in AGAINST=$$against" >&2; exit 1; }; \
			echo "breaking: skipped, $$against has no proto/ directory yet"; exit 0; \
		fi; \
	fi; \
	echo "$(BUF) breaking --against '$$against'"; $(BUF) breaking --against "$$against"

## check-generated: regenerate everything and fail if the committed output differs.
check-generated:
	@$(MAKE) --no-print-directory protodeps
	@$(MAKE) --no-print-directory generate
	git diff --exit-code -- $(GENERATED)
	@untracked=$$(git ls-files --others --exclude-standard -- $(GENERATED)); \
	if [[ -n "$$untracked" ]]; then \
		echo "untracked generated files (commit them):"; echo "$$untracked"; exit 1; \
	fi

# --- test, run and bench targets go below this line ---------------------------

.PHONY: build run test bench clean clean-data help
.DEFAULT_GOAL := help

# Makes sure a PostgreSQL server answers at a URL (given as the name of the
# variable holding it): the running one, or a private cluster in .data/postgres.
PG_LOCAL := deploy/local/postgres.sh

# Extra `go test` flags, e.g. TESTFLAGS='-run TestCreate -v'.
TESTFLAGS ?=
# `make bench` flags (tests are skipped with -run '^$'), e.g. BENCHFLAGS='-bench Create -benchtime 5s'.
BENCHFLAGS ?= -bench . -benchmem -count 1

## build: compile the rapport binary into bin/rapport.
build:
	go build -o bin/rapport ./services/rapport

## run: serve everything locally in dev mode (Postgres, migrations, REST :8080, gRPC :9090); Ctrl-C stops.
run: build
	@deploy/local/run.sh

## test: go vet and go test -race on every module, against RAPPORT_TEST_DATABASE_URL (Postgres started if needed).
test: browser
	$(PG_LOCAL) ensure RAPPORT_TEST_DATABASE_URL
	go vet $(MODULES)
	go test -race -count=1 -timeout 15m $(TESTFLAGS) $(MODULES)

## bench: run every benchmark once (BENCHFLAGS), no tests.
bench:
	$(PG_LOCAL) ensure RAPPORT_TEST_DATABASE_URL
	go test -run '^$$' $(BENCHFLAGS) $(MODULES)

## clean: remove build output (bin/); keeps .data.
clean:
	rm -rf bin

## clean-data: stop the private Postgres cluster, then remove .data (its databases, JetStream data, dev keys).
clean-data:
	$(PG_LOCAL) stop
	rm -rf .data

## help: list the targets.
help:
	@echo 'usage: make <target> [VAR=value]'
	@sed -n 's/^## \([A-Za-z0-9_-]*\): \(.*\)/\1	\2/p' $(MAKEFILE_LIST) \
		| awk -F'\t' '{ printf "  %-16s %s\n", $$1, $$2 }'

# --- API docs page (services/gateway/docs) ------------------------------------

.PHONY: docs-assets browser

# swagger-ui-dist version for docs-assets; empty re-fetches the version pinned
# (with its tarball's sha512 integrity) in services/gateway/docs/assets/VERSION.
SWAGGER_UI_VERSION ?=

## docs-assets: re-vendor swagger-ui-dist for /docs (npm pack, integrity-checked); SWAGGER_UI_VERSION=x.y.z bumps the pin.
docs-assets:
	tools/docs-assets/vendor.sh services/gateway/docs/assets $(SWAGGER_UI_VERSION)

## browser: make sure a headless Chromium is in PATH for the /docs browser test (as root with apt-get, installs Debian's chromium).
browser:
	@for b in chromium chromium-browser google-chrome; do \
		if command -v "$$b" >/dev/null; then echo "browser: $$(command -v "$$b")"; exit 0; fi; \
	done; \
	if [[ $$(id -u) == 0 ]] && command -v apt-get >/dev/null; then \
		echo 'browser: installing Debian'"'"'s chromium: apt-get update && apt-get install -y chromium'; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		b=$$(command -v chromium) || { echo 'browser: apt-get installed chromium, but it is not in PATH' >&2; exit 1; }; \
		echo "browser: $$b"; exit 0; \
	fi; \
	echo 'browser: no chromium, chromium-browser or google-chrome in PATH, and cannot install one here (needs root and apt-get).' >&2; \
	echo 'browser: install Debian'"'"'s chromium:  sudo apt-get update && sudo apt-get install -y chromium' >&2; \
	echo 'browser: (elsewhere, any Chromium or Google Chrome reachable as chromium, chromium-browser or google-chrome)' >&2; \
	if [[ "$${RAPPORT_REQUIRE_BROWSER:-}" == 1 || ( -n "$${CI:-}" && "$${CI:-}" != 0 && "$${CI,,}" != false ) ]]; then \
		echo 'browser: required (CI or RAPPORT_REQUIRE_BROWSER=1 is set)' >&2; exit 1; \
	fi; \
	echo 'browser: the browser test will be skipped' >&2
