# The offline build's Go image: a local Debian base and the host's Go.
ARG BASE=backupkit-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends make git && rm -rf /var/lib/apt/lists/*
COPY go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local
