# The offline build's Go image: a local Debian base and the host's Go.
ARG BASE=backupkit-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends make git && rm -rf /var/lib/apt/lists/*
COPY go /usr/local/go
# The host's CA bundle: the module proxy may sit behind the host's TLS
# inspection, whose CA only the host's bundle holds.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local
