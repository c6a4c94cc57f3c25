"""Retrieval latency with 100,000 chunks in a Chroma server (`chroma run`), as replicas would query it.

    .venv/bin/python -m bench.retrieval_server --chunks 100000

The 1,639 real runbooks and ADRs of `../shared/corpora` are ingested again and again, each round as a
separate folder whose documents end with a line naming the round, until the catalog holds `--chunks`
chunks (the vectors go to the Chroma server, the catalog to SQLite). Then the 40 questions of
`../shared/eval/dev.jsonl` are asked `--rounds` times each, measuring:
- the whole retrieval (`Retriever.search`: embed the question, the Chroma server's nearest
  neighbours, BM25, fusion, the catalog) — the target is p95 under 100 ms;
- the Chroma server's query alone, with the question already embedded.
Copies repeat most chunks, so the index holds near-duplicate vectors; that makes the nearest-neighbour
search no easier.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.report import save  # noqa: E402
from bot.answers.evaluation import percentile  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.wiring import Services  # noqa: E402
from tests.servers import chroma_server  # noqa: E402

SHARED = ROOT.parent / "shared"
SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm")


def _copy(corpora: Path, target: Path, round_number: int) -> None:
    """The corpora under `target`, each document ending with a line naming the round."""
    for source in corpora.rglob("*"):
        if not source.is_file() or source.suffix.lower() not in SUFFIXES:
            continue
        destination = target / source.relative_to(corpora)
        destination.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8", errors="replace")
        destination.write_text(f"{text}\n\nMirror {round_number} of this document.\n", encoding="utf-8")


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 1),
        "p95_ms": round(percentile(ordered, 95) * 1000, 1),
        "p99_ms": round(percentile(ordered, 99) * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    questions = [
        json.loads(line)["question"]
        for line in (SHARED / "eval" / "dev.jsonl").read_text().splitlines()
        if line.strip()
    ]
    with chroma_server(work / "chroma") as url:
        services = Services(Settings(chroma_url=url, data_dir=work / "data"))  # type: ignore[call-arg]
        (work / "data").mkdir(parents=True, exist_ok=True)
        services.catalog.ensure_schema()
        started = time.monotonic()
        rounds = 0
        while services.catalog.count()[1] < args.chunks:
            folder = work / f"mirror-{rounds:02d}"
            _copy(args.corpora, folder, rounds)
            services.ingestor.run([folder])
            shutil.rmtree(folder)
            rounds += 1
            print(f"round {rounds}: {services.catalog.count()[1]:,} chunks", file=sys.stderr, flush=True)
        ingest_seconds = time.monotonic() - started
        documents, chunks = services.catalog.count()
        vectors = services.vectors.count()
        retriever = services.retriever
        retriever.search(questions[0])  # warm: the model, the lexicon, the connection
        whole: list[float] = []
        nearest: list[float] = []
        embedder = services.embedder
        for _ in range(args.rounds):
            for question in questions:
                began = time.perf_counter()
                retriever.search(question)
                whole.append(time.perf_counter() - began)
                embedding = embedder.embed_query(question)
                began = time.perf_counter()
                services.vectors.query(embedding, 50)
                nearest.append(time.perf_counter() - began)
        services.close()
    return {
        "documents": documents,
        "chunks": chunks,
        "vectors_in_chroma_server": vectors,
        "ingest_rounds": rounds,
        "ingest_seconds": round(ingest_seconds, 1),
        "queries": len(whole),
        "retrieval": _ms(whole),
        "chroma_server_query_alone": _ms(nearest),
        "target_p95_ms": 100,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="times each of the 40 questions is asked")
    parser.add_argument("--corpora", type=Path, default=SHARED / "corpora", help="the documents to mirror")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retrieval_server.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="steward-bench-retrieval-") as folder:
        figures = run(args, Path(folder))
    return save(figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
