#!/bin/sh
# Container entrypoint: migrate the database, then run the sourcelens command (default: serve) as PID 1, so
# that SIGTERM reaches it directly (graceful shutdown, docs/operations.md). Any other program runs as given.
set -eu

[ "$#" -gt 0 ] || set -- serve
case "$1" in
    serve | demo | ingest | search | reindex | keys)
        sourcelens db upgrade
        exec sourcelens "$@"
        ;;
    db)
        exec sourcelens "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
