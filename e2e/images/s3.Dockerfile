# A local stand-in for MinIO: versitygw serving a folder, its root keys
# from the same secret files compose gives MinIO.
ARG BASE=backupkit-base:bookworm
FROM ${BASE}
COPY versitygw /usr/local/bin/versitygw
COPY s3-entrypoint.sh /usr/local/bin/s3-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/s3-entrypoint.sh"]
