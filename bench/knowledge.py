"""Knowledge-core benchmark: Steward against the plain LangChain recipe and BM25 alone, in one run.

    .venv/bin/python -m bench.knowledge --corpora ../shared/corpora --questions ../shared/eval/dev.jsonl

Steward:
- runs a fresh ingest of the corpora;
- re-runs the ingest with nothing changed, through the `steward` command (process start-up included);
- answers every question warm.

The LangChain recipe is the one a user would copy:
- RecursiveCharacterTextSplitter(1000, 200);
- Chroma;
- the same packaged model through HuggingFaceEmbeddings;
- similarity_search.

BM25 alone ranks Steward's own chunks with Steward's BM25 and nothing else. A baseline's answer is
the first 1,000 characters of its top chunk, scored with the same answer-level figures as
`steward eval` (answer-hint, hint@1, answer length, fragment lines). Results are printed as a
Markdown table and saved as JSON under bench/results/.

`--data-dir` reuses an ingested Steward index and `--langchain-dir` keeps the LangChain store
between runs; their ingest figures then show n/a.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.report import ingested_services
from bot.answers.evaluation import (
    LabelledQuestion,
    evaluate,
    fragment_lines,
    percentile,
    read_questions,
    reads_the_hint,
)
from bot.config import Settings
from bot.index.embedding import Embedder, packaged_model_path
from bot.index.lexical import terms
from bot.wiring import Services
from ingest.documents import decode, discover

ROOT = Path(__file__).resolve().parents[1]

Ranking = list[tuple[str, str]]  # (path, passage text), best first

# What a baseline "answers": its top chunk, cut at the LangChain recipe's chunk size (its chunks fit
# already), so both baselines' answers are cut alike.
BASELINE_ANSWER_CHARS = 1000

# Written into --langchain-dir after a complete build: which corpora the store holds.
LANGCHAIN_SOURCE = "steward-bench-source.json"


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def score_rankings(questions: Sequence[LabelledQuestion], rank: Callable[[str], Ranking]) -> dict[str, float]:
    """recall@5 and MRR@10 over distinct documents, hint@5 and hint@1 over the top passages, latency,
    and the answer-level figures of `steward eval` for the top chunk read as the answer."""
    rank(questions[0].question)  # warm
    recall = mrr = hint = hint_top = read = 0.0
    latencies: list[float] = []
    lengths: list[float] = []
    fragments = 0
    answerable = [q for q in questions if q.answerable]
    for question in questions:
        started = time.perf_counter()
        ranking = rank(question.question)
        latencies.append((time.perf_counter() - started) * 1000)
        # A baseline never abstains, so every question's answer counts, as Steward's do when given.
        answer = ranking[0][1][:BASELINE_ANSWER_CHARS] if ranking else ""
        lengths.append(len(answer))
        fragments += len(fragment_lines(answer))
        if not question.answerable:
            continue
        documents = list(dict.fromkeys(path for path, _ in ranking))
        relevant = set(question.relevant)
        recall += 1.0 if relevant & set(documents[:5]) else 0.0
        position = next((i for i, p in enumerate(documents[:10], start=1) if p in relevant), None)
        mrr += 1.0 / position if position else 0.0
        wanted = _normalise(question.answer_hint)
        hint += 1.0 if wanted and any(wanted in _normalise(text) for _, text in ranking[:5]) else 0.0
        hint_top += 1.0 if wanted and any(wanted in _normalise(text) for _, text in ranking[:1]) else 0.0
        read += 1.0 if reads_the_hint(answer, question.answer_hint) else 0.0
    n = len(answerable)
    return {
        "recall@5": recall / n,
        "hint@5": hint / n,
        "hint@1": hint_top / n,
        "mrr@10": mrr / n,
        "answer_hint": read / n,
        "answer_chars_p50": statistics.median(lengths),
        "answer_chars_p95": percentile(lengths, 95),
        "fragment_lines": fragments,
        "latency_p50_ms": statistics.median(latencies),
        "latency_p95_ms": percentile(latencies, 95),
    }


def _settings(data: Path, embedded_word_pieces: int | None) -> Settings:
    if embedded_word_pieces is None:
        return Settings(data_dir=data)
    return Settings(data_dir=data, embedded_word_pieces=embedded_word_pieces)


def _steward_answers(services: Services, questions: Sequence[LabelledQuestion]) -> dict[str, Any]:
    summary = evaluate(services.answers, questions).summary()
    keys = [
        "recall@5",
        "hint@5",
        "hint@1",
        "mrr@10",
        "answer_hint",
        "answer_chars_p50",
        "answer_chars_p95",
        "fragment_lines",
        "abstained_unanswerable",
        "abstained_answerable",
        "latency_p50_ms",
        "latency_p95_ms",
    ]
    return {key: summary[key] for key in keys}


def reuse_steward(data: Path, questions: Sequence[LabelledQuestion]) -> dict[str, Any]:
    """The evaluation on an index ingested earlier; the ingest figures are n/a."""
    services = ingested_services(data)
    chunks = len(services.retriever.lexicon().chunks)
    return {
        "ingest_seconds": None,
        "ingest_seconds_all": [],
        "chunks": chunks,
        "word_pieces": None,
        "word_pieces_per_second": None,
        "reingest_seconds_median": None,
        **_steward_answers(services, questions),
        "services": services,
    }


def run_steward(
    corpora: Path,
    questions: Sequence[LabelledQuestion],
    work: Path,
    repeat: int = 1,
    embedded_word_pieces: int | None = None,
) -> dict[str, Any]:
    """Fresh ingest (median of `repeat`), no-change re-ingest (CLI) and the evaluation."""
    timings: list[float] = []
    for attempt in range(repeat):
        data = work / f"steward-{embedded_word_pieces}-{attempt}"
        services = Services(_settings(data, embedded_word_pieces))
        started = time.perf_counter()
        report = services.ingestor.run([corpora])
        timings.append(time.perf_counter() - started)
    ingest_seconds = statistics.median(timings)

    env = {**os.environ, "STEWARD_DATA_DIR": str(data)}
    if embedded_word_pieces is not None:
        env["STEWARD_EMBEDDED_WORD_PIECES"] = str(embedded_word_pieces)
    steward = Path(sys.executable).with_name("steward")
    reingest: list[float] = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([str(steward), "ingest", str(corpora)], env=env, check=True, capture_output=True)
        reingest.append(time.perf_counter() - started)

    return {
        "ingest_seconds": ingest_seconds,
        "ingest_seconds_all": timings,
        "chunks": report.chunks,
        "word_pieces": report.word_pieces,
        "word_pieces_per_second": report.word_pieces / ingest_seconds,
        "reingest_seconds_median": statistics.median(reingest),
        **_steward_answers(services, questions),
        "services": services,
    }


def run_bm25(services: Services, questions: Sequence[LabelledQuestion]) -> dict[str, Any]:
    """BM25 alone over Steward's chunks, one passage per document like Steward's list."""
    lexicon = services.retriever.lexicon()

    def rank(question: str) -> Ranking:
        ranking: Ranking = []
        seen: set[str] = set()
        for hit in lexicon.bm25.search(terms(question), 60):
            chunk = lexicon.chunks[hit.row]
            path = lexicon.documents[chunk.doc_id].path
            if path not in seen:
                seen.add(path)
                ranking.append((path, chunk.text))
        return ranking

    figures = score_rankings(questions, rank)
    return {**figures, "abstained_unanswerable": 0, "abstained_answerable": 0}


def _kept_store(store_dir: Path | None, corpora: Path) -> bool:
    """Whether --langchain-dir holds a complete store of these corpora (False: build one there)."""
    if store_dir is None or not store_dir.exists() or not any(store_dir.iterdir()):
        return False
    source = store_dir / LANGCHAIN_SOURCE
    if not source.is_file():
        raise SystemExit(
            f"--langchain-dir {store_dir}: not empty but has no {LANGCHAIN_SOURCE} (an unfinished "
            "build or another folder); empty it to build the store again"
        )
    built_from = json.loads(source.read_text(encoding="utf-8")).get("corpora")
    if built_from != str(corpora):
        raise SystemExit(
            f"--langchain-dir {store_dir}: holds {built_from}, not {corpora}; "
            "use another folder or empty this one"
        )
    return True


def run_langchain(
    corpora: Path,
    questions: Sequence[LabelledQuestion],
    work: Path,
    repeat: int = 1,
    store_dir: Path | None = None,
) -> dict[str, Any]:
    """The recipe from LangChain's RAG tutorial, on the same files and the same model; the store is
    kept in `store_dir` when given, and loaded from there when it is already built."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from chromadb.config import Settings as ChromaSettings
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    client_settings = ChromaSettings(anonymized_telemetry=False, is_persistent=True)
    if _kept_store(store_dir, corpora):
        assert store_dir is not None
        store = Chroma(
            persist_directory=str(store_dir),
            embedding_function=HuggingFaceEmbeddings(model_name=str(packaged_model_path())),
            client_settings=client_settings,
        )

        def rank_kept(question: str) -> Ranking:
            return [(d.metadata["source"], d.page_content) for d in store.similarity_search(question, k=10)]

        return {
            **score_rankings(questions, rank_kept),
            "ingest_seconds": None,
            "ingest_seconds_all": [],
            "chunks": len(store.get(include=[])["ids"]),
            "word_pieces": None,
            "word_pieces_per_second": None,
            "abstained_unanswerable": 0,
            "abstained_answerable": 0,
        }

    timings: list[float] = []
    for attempt in range(repeat):
        # With a kept store, the last (timed like the others) build is the one that stays.
        kept = store_dir is not None and attempt == repeat - 1
        target = store_dir if kept and store_dir is not None else work / f"langchain-{attempt}"
        started = time.perf_counter()
        documents = []
        for relative, file in discover(corpora):
            text = decode(relative, file.read_bytes(), 2_000_000)
            if isinstance(text, str):
                documents.append(Document(page_content=text, metadata={"source": relative}))
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        chunks = splitter.split_documents(documents)
        embeddings = HuggingFaceEmbeddings(model_name=str(packaged_model_path()))
        store = Chroma.from_documents(
            chunks,
            embeddings,
            persist_directory=str(target),
            client_settings=client_settings,
        )
        timings.append(time.perf_counter() - started)
    if store_dir is not None:
        (store_dir / LANGCHAIN_SOURCE).write_text(json.dumps({"corpora": str(corpora)}), encoding="utf-8")
    ingest_seconds = statistics.median(timings)
    pieces = sum(min(n, 256) for n in Embedder().count_word_pieces([c.page_content for c in chunks]))

    def rank(question: str) -> Ranking:
        return [(d.metadata["source"], d.page_content) for d in store.similarity_search(question, k=10)]

    figures = score_rankings(questions, rank)
    return {
        **figures,
        "ingest_seconds": ingest_seconds,
        "ingest_seconds_all": timings,
        "chunks": len(chunks),
        "word_pieces": pieces,
        "word_pieces_per_second": pieces / ingest_seconds,
        "abstained_unanswerable": 0,
        "abstained_answerable": 0,
    }


def table(results: dict[str, dict[str, Any]], unanswerable: int, answerable: int) -> str:
    """The comparison as a Markdown table."""

    def cell(system: str, key: str, fmt: str) -> str:
        value = results[system].get(key)
        return "n/a" if value is None else format(value, fmt)

    rows = [
        ("recall@5", "recall@5", ".3f"),
        ("hint@5", "hint@5", ".3f"),
        ("MRR@10", "mrr@10", ".3f"),
        ("hint@1", "hint@1", ".3f"),
        ("answer-hint (hint in the answer read) ¹", "answer_hint", ".3f"),
        ("answer length p50 (characters) ²", "answer_chars_p50", ".0f"),
        ("answer length p95 (characters) ²", "answer_chars_p95", ".0f"),
        ("fragment lines, all answers ²", "fragment_lines", "d"),
        ("query latency p50 (ms, warm)", "latency_p50_ms", ".1f"),
        ("query latency p95 (ms, warm)", "latency_p95_ms", ".1f"),
        ("ingest time (s, median)", "ingest_seconds", ".1f"),
        ("chunks", "chunks", "d"),
        ("word pieces embedded per second", "word_pieces_per_second", ",.0f"),
        ("re-ingest, nothing changed (s, median of 3)", "reingest_seconds_median", ".2f"),
    ]
    systems = ["steward", "langchain", "bm25"]
    lines = ["| figure | Steward | LangChain recipe | BM25 alone |", "|---|---|---|---|"]
    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(cell(s, key, fmt) for s in systems) + " |")
    lines.append(
        f"| abstained on unanswerable (of {unanswerable}) | "
        + " | ".join(str(results[s]["abstained_unanswerable"]) for s in systems)
        + " |"
    )
    lines.append(
        f"| abstained on answerable (of {answerable}) | "
        + " | ".join(str(results[s]["abstained_answerable"]) for s in systems)
        + " |"
    )
    lines += [
        "",
        f"A baseline's answer is the first {BASELINE_ANSWER_CHARS:,} characters of its top chunk; "
        "Steward's is the answer it composes.",
        f"¹ Share of the {answerable} answerable questions whose answer hint the answer states "
        "(Markdown `*`, `_` and backticks ignored); an abstention counts as a miss.",
        "² Over every answer given: Steward's on the questions it did not abstain on (answerable or "
        f"not); the baselines never abstain, so all {answerable + unanswerable} questions.",
    ]
    return "\n".join(lines)


def main() -> int:
    """Run all three systems and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpora", type=Path, default=ROOT.parent / "shared" / "corpora")
    parser.add_argument("--questions", type=Path, default=ROOT.parent / "shared" / "eval" / "dev.jsonl")
    parser.add_argument("--skip-langchain", action="store_true", help="only Steward and BM25 (quick runs)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="fresh ingests per system; the median is reported"
    )
    parser.add_argument(
        "--compare-embedded",
        default="",
        help="STEWARD_EMBEDDED_WORD_PIECES values (comma-separated) to also measure Steward with",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="an ingested Steward data dir (of the same --corpora) to answer from; "
        "skips the fresh ingest and the re-ingest, whose rows show n/a",
    )
    parser.add_argument(
        "--langchain-dir",
        type=Path,
        help="keep the LangChain recipe's Chroma store here: built when the folder is empty or "
        "missing, loaded otherwise (its ingest rows then show n/a)",
    )
    args = parser.parse_args()
    questions = read_questions(args.questions)
    corpora = args.corpora.resolve()
    langchain_dir = args.langchain_dir.resolve() if args.langchain_dir else None
    work = Path(tempfile.mkdtemp(prefix="steward-bench-"))
    try:
        results: dict[str, dict[str, Any]] = {}
        if args.data_dir is not None:
            steward = reuse_steward(args.data_dir.resolve(), questions)
        else:
            steward = run_steward(corpora, questions, work, args.repeat)
        services = steward.pop("services")
        results["steward"] = steward
        results["bm25"] = run_bm25(services, questions)
        variants: dict[int, dict[str, Any]] = {}
        for value in [int(v) for v in args.compare_embedded.split(",") if v.strip()]:
            variant = run_steward(corpora, questions, work, 1, value)
            variant.pop("services")
            variants[value] = variant
        if not args.skip_langchain:
            results["langchain"] = run_langchain(corpora, questions, work, args.repeat, langchain_dir)
        else:
            results["langchain"] = {"abstained_unanswerable": 0, "abstained_answerable": 0}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    unanswerable = sum(1 for q in questions if not q.answerable)
    markdown = table(results, unanswerable, len(questions) - unanswerable)
    print(markdown)
    if variants:
        print(
            "\n| embedded word pieces | ingest (s) | recall@5 | hint@5 | MRR@10 | abstained unanswerable "
            "| abstained answerable |"
        )
        print("|---|---|---|---|---|---|---|")
        labelled = [("default (96)", results["steward"])]
        labelled += [(str(value), figures) for value, figures in variants.items()]
        for label, figures in labelled:
            ingest = "n/a" if figures["ingest_seconds"] is None else f"{figures['ingest_seconds']:.1f}"
            print(
                f"| {label} | {ingest} | {figures['recall@5']:.3f} "
                f"| {figures['hint@5']:.3f} | {figures['mrr@10']:.3f} "
                f"| {figures['abstained_unanswerable']} | {figures['abstained_answerable']} |"
            )
    if results["langchain"].get("ingest_seconds") and results["steward"]["ingest_seconds"]:
        speedup = results["langchain"]["ingest_seconds"] / results["steward"]["ingest_seconds"]
        print(f"\nSteward ingests {speedup:.2f}x as fast as the LangChain recipe in this run.")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"knowledge-{stamp}.json").write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "data_dir": str(args.data_dir.resolve()) if args.data_dir else None,
                "langchain_dir": str(langchain_dir) if langchain_dir else None,
                "baseline_answer_chars": BASELINE_ANSWER_CHARS,
                "results": results,
                "embedded_word_pieces_variants": variants,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
