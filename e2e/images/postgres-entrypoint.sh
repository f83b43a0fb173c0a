#!/bin/sh
set -e
BIN=/usr/lib/postgresql/$PG_MAJOR/bin
USER=${POSTGRES_USER:-postgres}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "$POSTGRES_PASSWORD_FILE" ]; then PW=$(cat "$POSTGRES_PASSWORD_FILE"); else PW=$POSTGRES_PASSWORD; fi
  umask 077
  printf '%s\n' "$PW" > /tmp/pwfile
  "$BIN/initdb" -D "$PGDATA" -U "$USER" --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f /tmp/pwfile
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "$BIN/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
  DB=${POSTGRES_DB:-$USER}
  if [ "$DB" != postgres ]; then "$BIN/psql" -X -q -U "$USER" -d postgres -c "CREATE DATABASE \"$DB\""; fi
  "$BIN/pg_ctl" -D "$PGDATA" -w stop >/dev/null
fi
exec "$BIN/postgres" -D "$PGDATA"
