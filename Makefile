# BackupKit. `make test` is what CI runs (.ci/run).
GO      ?= go
BIN     ?= bin/backupkit
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
TOOLS   := $(CURDIR)/.tools

.PHONY: build run test test-short lint bench fuzz docker tools clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/backupkit

# The main job on a local default: back up the local PostgreSQL's
# "postgres" database to ./backups (writes backupkit.yaml on first run).
run: build
	@test -f backupkit.yaml || $(BIN) init -o backupkit.yaml --storage ./backups
	$(BIN) apply -c backupkit.yaml

# Integration tests need PostgreSQL on 127.0.0.1:5432 (PG* variables
# override) and the versitygw S3 server, which `make tools` installs.
test: lint tools
	PATH="$(TOOLS):$$PATH" $(GO) test -count=1 -timeout 20m ./...

test-short:
	$(GO) test -short -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

tools: $(TOOLS)/versitygw

$(TOOLS)/versitygw:
	GOBIN=$(TOOLS) $(GO) install github.com/versity/versitygw/cmd/versitygw@v1.8.0

bench: build tools
	PATH="$(TOOLS):$$PATH" $(GO) run ./bench $(BENCHFLAGS)

fuzz:
	$(GO) test ./schema -run '^$$' -fuzz FuzzLoad -fuzztime 60s
	$(GO) test ./format -run '^$$' -fuzz FuzzDecrypt -fuzztime 60s
	$(GO) test ./format -run '^$$' -fuzz FuzzDecode -fuzztime 60s

docker:
	docker build -t backupkit:$(VERSION) .

clean:
	rm -rf bin
