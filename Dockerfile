# BackupKit's image: the binary, PostgreSQL client tools of every major a
# server may run (BackupKit picks the one matching each server), a
# non-root user, a HEALTHCHECK that is the binary itself.
#
# One Dockerfile, two ways to build it (same stages, same entrypoint):
#  - online, the default: golang and Debian images from Docker Hub and the
#    clients of every supported major from the PostgreSQL project's apt
#    repository (apt.postgresql.org):
#        docker build -t backupkit:local --build-arg VERSION=$(git describe) .
#  - offline (make e2e): local base images and Debian's own packages,
#    PostgreSQL 17 from trixie and 15 copied from bookworm:
#        docker build -t backupkit:local --build-arg GO_IMAGE=backupkit-go:local \
#          --build-arg BASE_IMAGE=backupkit-base:trixie --build-arg PG15_IMAGE=backupkit-base:bookworm \
#          --build-arg PG_SOURCE=debian .
# (No syntax directive: the classic builder needs no frontend image.)
ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
ARG PG15_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
# libdeflate, which make build builds in to inflate encrypted gzip backups.
RUN test -f /usr/include/libdeflate.h || { apt-get update && \
      apt-get install -y --no-install-recommends libdeflate-dev && rm -rf /var/lib/apt/lists/*; }
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=${VERSION}

# Debian holds one PostgreSQL major per release: the offline build takes
# the client of 15 from bookworm (the online build needs nothing here).
FROM ${PG15_IMAGE} AS pg15
ARG PG_SOURCE=pgdg
RUN mkdir -p /extra && if [ "$PG_SOURCE" = debian ]; then \
      apt-get update && apt-get install -y --no-install-recommends postgresql-client-15 && \
      cp -a /usr/lib/postgresql/15 /extra/15 && rm -rf /var/lib/apt/lists/*; fi

FROM ${BASE_IMAGE}
ARG PG_SOURCE=pgdg
ARG PG_MAJORS="13 14 15 16 17 18"
RUN set -eux; \
    apt-get update; \
    if [ "$PG_SOURCE" = pgdg ]; then \
      apt-get install -y --no-install-recommends ca-certificates curl; \
      install -d /usr/share/postgresql-common/pgdg; \
      curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
      . /etc/os-release; \
      echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
      apt-get update; \
      pkgs=""; for v in $PG_MAJORS; do pkgs="$pkgs postgresql-client-$v"; done; \
      apt-get install -y --no-install-recommends $pkgs; \
      apt-get purge -y curl; apt-get autoremove -y; \
    else \
      apt-get install -y --no-install-recommends ca-certificates postgresql-client; \
    fi; \
    rm -rf /var/lib/apt/lists/*; \
    useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin backupkit; \
    mkdir -p /backups /etc/backupkit; \
    chown 10001:10001 /backups; \
    chmod 0700 /backups
COPY --from=pg15 /extra/ /usr/lib/postgresql/
COPY --from=build /src/bin/backupkit /usr/local/bin/backupkit
USER 10001:10001
ENV BACKUPKIT_LISTEN=:9090 BACKUPKIT_CONFIG=/etc/backupkit/config.yaml
EXPOSE 9090
# The daemon records where it listens; the check follows --listen.
HEALTHCHECK --interval=30s --timeout=10s --start-period=1m CMD ["backupkit", "healthcheck"]
ENTRYPOINT ["backupkit"]
CMD ["daemon", "-c", "/etc/backupkit/config.yaml"]
