# A stand-in for chromadb/chroma, for tests/test_compose.py on a machine that cannot reach Docker Hub: the
# same chromadb release as pyproject.toml's client, serving /data on port 8000 as the official image
# does (bash is there for compose.yaml's health check).
ARG BASE=steward-local/python:3.11-slim
FROM ${BASE}
ARG CHROMADB_VERSION=1.5.9
RUN pip install --no-cache-dir "chromadb==${CHROMADB_VERSION}"
ENV ANONYMIZED_TELEMETRY=False
EXPOSE 8000
CMD ["chroma", "run", "--host", "0.0.0.0", "--port", "8000", "--path", "/data"]
