# BackupKit. `make test` is what CI runs (.ci/run).
GO      ?= go
BIN     ?= bin/backupkit
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
TOOLS   := $(CURDIR)/.tools

.PHONY: build run test test-short test-race lint bench fuzz mutate docker e2e tools clean

# A static binary either way. With a C compiler (and libc's static
# archive: Debian's libc6-dev) zstd backups are compressed by libzstd,
# built in by cgo; without one, CGO=0 or no cc on PATH, by the pure Go
# encoder (same format; at the default level it takes about 1.6× the
# CPU). With cgo and libdeflate (Debian's libdeflate-dev; LIBDEFLATE=0
# leaves it out) the gzip members of an encrypted backup are inflated,
# once authenticated, by libdeflate in a third of the Go decoder's time.
CGO ?= $(shell printf 'int main(void){return 0;}' | cc -static -x c -o /dev/null - >/dev/null 2>&1 && echo 1 || echo 0)
LIBDEFLATE ?= $(shell [ "$(CGO)" = 1 ] && printf '\043include <libdeflate.h>\nint main(void){libdeflate_free_decompressor(libdeflate_alloc_decompressor());return 0;}' | \
	cc -static -x c -o /dev/null - -ldeflate >/dev/null 2>&1 && echo 1 || echo 0)
ifeq ($(LIBDEFLATE),1)
TAGS := libdeflate
CTAGS := netgo,osusergo,libdeflate
else
CTAGS := netgo,osusergo
endif
ifeq ($(CGO),1)
BUILDFLAGS := -tags $(CTAGS) -ldflags '$(LDFLAGS) -linkmode external -extldflags -static'
else
BUILDFLAGS := -ldflags '$(LDFLAGS)'
endif

build:
	CGO_ENABLED=$(CGO) $(GO) build -trimpath $(BUILDFLAGS) -o $(BIN) ./cmd/backupkit

# The main job on a local default: back up the local PostgreSQL's
# "postgres" database to ./backups (writes backupkit.yaml on first run).
run: build
	@test -f backupkit.yaml || $(BIN) init -o backupkit.yaml --storage ./backups
	$(BIN) apply -c backupkit.yaml

# Integration tests need PostgreSQL on 127.0.0.1:5432 (PG* variables
# override) and the versitygw S3 server, which `make tools` installs.
# The summary prints each package's result, every failure in full, and
# loudly every test skipped for a missing service, root or test data.
test: lint tools
	PATH="$(TOOLS):$$PATH" $(GO) test -tags '$(TAGS)' -count=1 -timeout 20m -json ./... | $(GO) run ./internal/testsummary
	@echo "the codecs in a build without cgo (the pure Go zstd encoder and gzip decoder):"
	CGO_ENABLED=0 $(GO) test -count=1 -run 'Zstd|BlockWriter|Gzip' ./format

test-short:
	$(GO) test -short -count=1 ./...

# Every test under the race detector (about 4 minutes; not part of CI's
# run, which keeps to `make test`).
test-race: tools
	PATH="$(TOOLS):$$PATH" $(GO) test -race -tags '$(TAGS)' -count=1 -timeout 30m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags '$(TAGS)' ./...

tools: $(TOOLS)/versitygw $(TOOLS)/promtool $(TOOLS)/age

$(TOOLS)/versitygw:
	GOBIN=$(TOOLS) $(GO) install github.com/versity/versitygw/cmd/versitygw@v1.8.0

# The age CLI, for the test that reads a backup without BackupKit.
$(TOOLS)/age:
	GOBIN=$(TOOLS) $(GO) install filippo.io/age/cmd/age@v1.3.2

# Prometheus's rule tester, for examples/alerts_test.yaml: taken from
# Debian's prometheus package (seconds), else built (about 11 minutes).
$(TOOLS)/promtool:
	@mkdir -p $(TOOLS)
	@d=$$(mktemp -d) && (cd $$d && apt-get download prometheus >/dev/null 2>&1 && dpkg -x prometheus_*.deb x && \
		cp x/usr/bin/promtool $(TOOLS)/promtool && echo "promtool from Debian's prometheus package") ; rm -rf $$d
	@test -x $(TOOLS)/promtool || GOBIN=$(TOOLS) $(GO) install github.com/prometheus/prometheus/cmd/promtool@v0.316.0

bench: build tools
	PATH="$(TOOLS):$$PATH" $(GO) run ./bench $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench 'PlanWholeServer' -benchtime 3x ./reconcile

# Mutation testing of the safety code (retention, planning, apply) and the
# encryption format: every surviving mutant needs a test or a reason.
# Slow integration tests are left out (-tags mutation); each mutant runs
# the package's other tests.
mutate: $(TOOLS)/gremlins
	$(TOOLS)/gremlins unleash --tags mutation --workers 2 --timeout-coefficient 10 \
		-E 'daemon\.go' -E 'spec\.go' ./reconcile
	$(TOOLS)/gremlins unleash --workers 2 --timeout-coefficient 10 \
		-E '(archive|codec|checksum|key|sniff)\.go' ./format

$(TOOLS)/gremlins:
	GOBIN=$(TOOLS) $(GO) install github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0

fuzz:
	$(GO) test ./schema -run '^$$' -fuzz FuzzLoad -fuzztime 60s
	$(GO) test ./format -run '^$$' -fuzz FuzzDecrypt -fuzztime 60s
	$(GO) test ./format -run '^$$' -fuzz FuzzDecode -fuzztime 60s
	$(GO) test ./format -run '^$$' -fuzz FuzzWalkArchive -fuzztime 60s
	$(GO) test -tags '$(TAGS)' ./format -run '^$$' -fuzz FuzzGzipMembers -fuzztime 60s

docker:
	docker build -t backupkit:$(VERSION) --build-arg VERSION=$(VERSION) .

# The sidecar for real: images built offline, compose.yaml run next to
# PostgreSQL 15 and 17, asserted from the outside (needs root).
e2e:
	e2e/run.sh

clean:
	rm -rf bin
