# A local stand-in for the official postgres image: Debian's server
# package, and an entrypoint that honours POSTGRES_DB, POSTGRES_USER and
# POSTGRES_PASSWORD(_FILE) the same way.
ARG BASE=backupkit-base:bookworm
FROM ${BASE}
ARG PG_MAJOR=15
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-${PG_MAJOR} && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
ENV PG_MAJOR=${PG_MAJOR} PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
