#!/bin/sh
set -e
ROOT_ACCESS_KEY=$(cat "$MINIO_ROOT_USER_FILE")
ROOT_SECRET_KEY=$(cat "$MINIO_ROOT_PASSWORD_FILE")
export ROOT_ACCESS_KEY ROOT_SECRET_KEY
mkdir -p /data
exec versitygw --port :9000 posix /data
