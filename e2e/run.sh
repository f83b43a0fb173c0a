#!/usr/bin/env bash
# make e2e: the sidecar for real. Installs what is missing (docker.io,
# docker-compose, debootstrap), starts dockerd if it is not running (and
# stops what it started), builds and caches local base images, builds the
# project image from the project's Dockerfile (backupkit:local, the name
# compose.yaml uses), then runs the assertions in e2e/e2e_test.go against
# the unchanged compose.yaml with e2e/compose.e2e.yaml on top.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${E2E_CACHE:-/var/cache/backupkit-e2e}
mkdir -p "$CACHE"
log() { echo "e2e: $*" >&2; }

need=()
command -v docker >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

started_dockerd=
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  dockerd >"$CACHE/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start: $(tail -5 "$CACHE/dockerd.log")"; exit 1; }
fi
cleanup() {
  (cd "$ROOT" && docker-compose -p bke2e -f compose.yaml -f e2e/compose.e2e.yaml --profile s3 down -v >/dev/null 2>&1) || true
  if [ -n "$started_dockerd" ]; then log "stopping the dockerd it started"; kill "$started_dockerd" 2>/dev/null || true; wait "$started_dockerd" 2>/dev/null || true; fi
}
trap cleanup EXIT

# Base images from debootstrap, cached as tarballs and as images.
for suite in bookworm trixie; do
  if ! docker image inspect "backupkit-base:$suite" >/dev/null 2>&1; then
    if [ ! -s "$CACHE/$suite.tar" ]; then
      log "debootstrap $suite"
      rm -rf "$CACHE/$suite.root"
      debootstrap --variant=minbase --include=ca-certificates "$suite" "$CACHE/$suite.root" http://deb.debian.org/debian >"$CACHE/debootstrap-$suite.log" 2>&1
      tar -C "$CACHE/$suite.root" -cf "$CACHE/$suite.tar" .
      rm -rf "$CACHE/$suite.root"
    fi
    docker import "$CACHE/$suite.tar" "backupkit-base:$suite" >/dev/null
  fi
done

build() { # tag dockerfile context [args...]
  local tag=$1 file=$2 ctx=$3; shift 3
  if ! docker image inspect "$tag" >/dev/null 2>&1 || [ "${E2E_REBUILD:-}" = "$tag" ]; then
    log "building $tag"
    docker build -q -t "$tag" -f "$file" "$@" "$ctx" >/dev/null
  fi
}

# The Go image of the offline build: the host's Go in a local base.
ctx=$(mktemp -d); trap 'rm -rf "$ctx"; cleanup' EXIT
GOROOT=$(go env GOROOT)
if ! docker image inspect backupkit-go:local >/dev/null 2>&1; then
  cp -a "$GOROOT" "$ctx/go"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
  build backupkit-go:local e2e/images/builder.Dockerfile "$ctx"
  rm -rf "$ctx/go"
fi
build backupkit-postgres:15 e2e/images/postgres.Dockerfile e2e/images --build-arg BASE=backupkit-base:bookworm --build-arg PG_MAJOR=15
build backupkit-postgres:17 e2e/images/postgres.Dockerfile e2e/images --build-arg BASE=backupkit-base:trixie --build-arg PG_MAJOR=17
make -s tools >/dev/null
cp .tools/versitygw e2e/images/versitygw
build backupkit-s3:local e2e/images/s3.Dockerfile e2e/images
rm -f e2e/images/versitygw

log "building backupkit:local from the Dockerfile"
start=$(date +%s)
docker build -q -t backupkit:local --build-arg GO_IMAGE=backupkit-go:local --build-arg BASE_IMAGE=backupkit-base:trixie \
  --build-arg PG15_IMAGE=backupkit-base:bookworm --build-arg PG_SOURCE=debian \
  --build-arg VERSION="$(git describe --tags --always --dirty 2>/dev/null || echo e2e)" . >/dev/null
log "image built in $(( $(date +%s) - start ))s, $(docker image inspect -f '{{.Size}}' backupkit:local | awk '{printf "%.0f MB", $1/1e6}')"

go test -tags e2e -count=1 -timeout 30m -v ./e2e
