#!/usr/bin/env bash
# Creates one database per store in the stack's PostgreSQL: MLflow's tracking and
# model registry, Prefect's server, and Feast's SQL registry. The postgres image runs
# this once, on an empty data volume (/docker-entrypoint-initdb.d); it is also safe to
# run again by hand, since it skips a database that exists:
#   docker compose -f infra/compose.yaml exec postgres /docker-entrypoint-initdb.d/10-microtune-databases.sh
# The image may source this file instead of running it, so it sets no shell options.
for db in ${MICROTUNE_DATABASES:-mlflow prefect feast}; do
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" \
    --set db="$db" --set owner="$POSTGRES_USER" <<'SQL' || exit 1
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
SQL
done
