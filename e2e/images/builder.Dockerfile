# The offline build's Go image: a local Debian base, the host's Go, and
# a C compiler with libc's static archive, as golang:1.26-bookworm has
# (make build then builds libzstd in), and libdeflate, as the Dockerfile
# installs in that image.
ARG BASE=backupkit-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends make git gcc libc6-dev libdeflate-dev && rm -rf /var/lib/apt/lists/*
COPY go /usr/local/go
# The host's CA bundle: the module proxy may sit behind the host's TLS
# inspection, whose CA only the host's bundle holds.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local
