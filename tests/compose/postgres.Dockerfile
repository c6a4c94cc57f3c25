# A stand-in for the official postgres image, for tests/test_compose.py on a machine that cannot reach
# Docker Hub: Debian 12's PostgreSQL 15 on the base image deploy/docker/build.sh --offline makes, with
# the official image's interface that deploy/docker/compose.yaml uses (POSTGRES_USER, POSTGRES_DB,
# POSTGRES_PASSWORD, data in /var/lib/postgresql/data, pg_isready on PATH).
ARG BASE=steward-local/python:3.11-slim
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
