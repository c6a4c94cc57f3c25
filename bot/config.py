"""Steward's settings: the only code that reads the environment.

Every field carries its help text; `tests/test_docs.py` fails when one is missing from the README.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A setting has a value Steward cannot use; the message names the variable."""


class Settings(BaseSettings):
    """Configuration from `STEWARD_*` environment variables (or a `.env` file)."""

    model_config = SettingsConfigDict(env_prefix="STEWARD_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("./.steward"),
        description="Folder for Steward's state: the embedded Chroma index and the SQLite database.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the state database (knowledge catalog and manifest). Unset: SQLite file "
            "`steward.db` in the data dir. Example: `postgresql+psycopg://steward@db/steward`."
        ),
    )
    chroma_url: str | None = Field(
        default=None,
        description=(
            "URL of a Chroma server (`http://host:8000`). Unset: embedded Chroma under the data dir."
        ),
    )
    chroma_collection: str = Field(
        default="steward-knowledge",
        description="Name of the Chroma collection that holds the knowledge base's vectors.",
    )
    llm: str | None = Field(
        default=None,
        description=(
            "LangChain model spec (`openai:gpt-4o-mini`, `ollama:llama3.1`) for written answers. "
            "Unset: extractive answers, no LLM."
        ),
    )
    llm_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long an LLM answer may take before Steward falls back to the extractive answer.",
    )
    max_file_bytes: int = Field(
        default=2_000_000,
        gt=0,
        description="Files larger than this are skipped by `steward ingest` (and listed as skipped).",
    )
    abstain_below: float = Field(
        default=0.55,
        ge=0,
        le=1,
        description=(
            "Confidence under which Steward abstains instead of answering (0 never abstains, "
            "1 always abstains)."
        ),
    )
    sources: int = Field(
        default=5,
        ge=1,
        le=20,
        description="How many distinct documents an answer's source list may hold.",
    )
    embedded_word_pieces: int = Field(
        default=96,
        ge=16,
        le=256,
        description=(
            "Word pieces of each chunk the embedding model sees (heading path first; BM25 always sees "
            "the whole chunk). Up to 256; higher is slower to ingest. Changing it needs `--rebuild`."
        ),
    )
    embedding_batch_size: int = Field(
        default=16,
        ge=1,
        description="Chunks per forward pass of the embedding model during ingest.",
    )

    @field_validator("chroma_url", "llm", "database_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `STEWARD_LLM=` in a shell or .env means "unset", not "a model called ''".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def resolved_database_url(self) -> str:
        """The state database URL, defaulting to SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'steward.db').resolve()}"

    @property
    def chroma_path(self) -> Path:
        """Where the embedded Chroma keeps its files."""
        return self.data_dir / "chroma"


def load_settings() -> Settings:
    """Read settings, turning pydantic's validation report into one clear message."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "STEWARD_" + "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid setting(s): " + "; ".join(problems)) from None
