# syntax=docker/dockerfile:1
# Build stage: the same `make build` as on a developer machine.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=${VERSION}

# Final stage: the binary and PostgreSQL 17 client tools (pg_dump can dump
# servers up to its own major version).
FROM alpine:3.21
RUN apk add --no-cache postgresql17-client ca-certificates tzdata \
 && adduser -D -H -u 10001 backupkit \
 && mkdir -p /backups /etc/backupkit \
 && chown backupkit:backupkit /backups
COPY --from=build /src/bin/backupkit /usr/local/bin/backupkit
USER backupkit
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m \
  CMD wget -qO- http://127.0.0.1:9090/healthz >/dev/null || exit 1
ENTRYPOINT ["backupkit"]
CMD ["daemon", "-c", "/etc/backupkit/config.yaml", "--listen", ":9090"]
