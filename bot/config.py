"""Steward's settings: the only code that reads the environment.

Every setting carries its help text, the docstring below it (pydantic's `use_attribute_docstrings` makes
it the field's description); `tests/test_docs.py` fails when one is missing from the Settings table
(docs/reference.md) or has no help.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigurationError
from bot.store.audit_anchor import KEY_ADVICE, KEY_MIN_CHARACTERS
from bot.store.engine import same_file, sqlite_file


class SettingsError(ConfigurationError):
    """A setting has a value Steward cannot use; the message names the variable."""


def _comma_separated(value: object, blank: tuple[str, ...] | None = ()) -> object:
    """A variable's comma-separated names as a tuple, blank parts dropped (`blank` when none is left);
    values given in code stay as they are."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip()) or blank
    return value


# A list of names written `a, b, c` in the environment (not JSON).
Names = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_separated)]
# The same where unset means something of its own: blank is unset, as for every other setting.
NamesOrUnset = Annotated[
    tuple[str, ...] | None, NoDecode, BeforeValidator(lambda value: _comma_separated(value, blank=None))
]


class Settings(BaseSettings):
    """Configuration from `STEWARD_*` environment variables (or a `.env` file)."""

    model_config = SettingsConfigDict(
        env_prefix="STEWARD_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        use_attribute_docstrings=True,  # each setting's help is the docstring below it
    )

    data_dir: Path = Path("./.steward")
    """Folder for Steward's state: the records database `steward.db` and, derived from the knowledge base, the
    catalog `catalog.db` and the embedded Chroma index `chroma/`."""

    database_url: str | None = None
    """SQLAlchemy URL of the records database: conversations, action requests, approvals, the audit log,
    digest runs and incidents. Back it up; no command deletes or recreates it. Unset: SQLite file `steward.db`
    in the data dir. Example: `postgresql+psycopg://steward@db/steward`."""

    catalog_url: str | None = None
    """SQLAlchemy URL of the knowledge catalog (documents, passages, the ingest manifest), an index derived
    from the knowledge base that `steward ingest --rebuild` recreates. Unset: SQLite file `catalog.db` in the
    data dir when the records database is SQLite, else the records database itself (its own `kb_*` tables,
    which replicas share). Never the records database's SQLite file."""

    chroma_url: str | None = None
    """URL of a Chroma server (`http://host:8000`). Unset: embedded Chroma under the data dir."""

    chroma_collection: str = "steward-knowledge"
    """Name of the Chroma collection that holds the knowledge base's vectors."""

    llm: str | None = None
    """`provider:model` (`openai:gpt-4o-mini`, `anthropic:MODEL`, `ollama:llama3.1`; an OpenAI-compatible
    server is `openai:MODEL` with STEWARD_LLM_BASE_URL) for written answers and for proposing action requests
    from free words; needs `pip install 'steward[PROVIDER]'`. Unset: extractive answers, no LLM."""

    llm_timeout_seconds: float = Field(default=30.0, gt=0)
    """How long the whole LLM step (an answer, streamed or not, or a proposal) may take before Steward falls
    back to the extractive answer (or reads the mention as a question). The client gets the same timeout and
    no retries of its own."""

    llm_base_url: str | None = None
    """Base URL of the LLM's API: an OpenAI-compatible server with `STEWARD_LLM=openai:MODEL` (vLLM,
    llama.cpp's server, Ollama's `http://localhost:11434/v1`, LM Studio, a company proxy). Unset: the
    provider's own API."""

    llm_api_key: SecretStr | None = None
    """API key sent to the LLM (a secret: never logged or shown). Unset: the provider's own variable
    (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`); with `openai:` and STEWARD_LLM_BASE_URL, the placeholder `EMPTY`
    (an OpenAI key never goes to another server)."""

    llm_temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature of the LLM (0 is the most literal). Unset: the provider's default."""

    max_file_bytes: int = Field(default=2_000_000, gt=0)
    """Files larger than this are skipped by `steward ingest` (and listed as skipped)."""

    abstain_below: float = Field(default=0.79, ge=0, le=1)
    """Confidence under which Steward abstains instead of answering (0 never abstains, 1 always abstains). The
    default is the threshold fitted on the dev set (docs/benchmarks.md)."""

    sources: int = Field(default=5, ge=1, le=20)
    """How many distinct documents an answer's source list may hold."""

    embedded_word_pieces: int = Field(default=96, ge=16, le=256)
    """Word pieces of each chunk the embedding model sees (heading path first; BM25 always sees the whole
    chunk). Up to 256; higher is slower to ingest. Changing it needs `--rebuild`."""

    embedding_batch_size: int = Field(default=16, ge=1)
    """Chunks per forward pass of the embedding model during ingest."""

    policies_dir: Path = Path("policies")
    """Folder of the policy files (`*.yaml`, `*.yml`) that decide guarded actions."""

    allowed_programs: Names | None = None
    """Comma-separated programs that `command` actions may run (names found on PATH, or full paths): the
    deployment's second key beside the policy files. A program not listed fails its action without running.
    Unset: the policy files alone decide, and `steward policy check` warns."""

    agent_channel: str | None = Field(default=None, pattern=r"[CG][A-Z0-9]{2,30}")
    """The Slack channel (id) where an AI agent's request posts its approval card when neither the request
    nor the action (`channel:` in the catalog) names one. Unset: such a request is refused (422)."""

    agent_callback_hosts: Names = ()
    """Comma-separated host names an agent's `callback_url` may point at. Steward POSTs the finished request
    there; without this list an agent could make Steward post anywhere inside the network, so the default
    (empty) refuses every callback: agents long-poll instead."""

    agent_long_polls: int = Field(default=4, ge=1, le=256)
    """Long-polls (`GET /api/v1/requests/{id}?wait=`) one agent may hold at once on one server; more get
    429 with `Retry-After`. Each holds an HTTP thread (STEWARD_HTTP_THREADS): one agent cannot take them
    all."""

    agent_callback_seconds: float = Field(default=1.0, gt=0, le=300)
    """How often `steward serve` sends the agents' callbacks that are due (retries back off on their own)."""

    alertmanager_token: SecretStr | None = None
    """Bearer token Alertmanager's webhook must send to POST /hooks/alertmanager (HTTP mode). Unset: the
    receiver answers 503."""

    alertmanager_max_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """The largest Alertmanager notification body accepted (bytes); a larger one gets 413. The default (16
    MiB) holds a group of about 4,000 alerts with long annotations (1,300 are about 5.4 MB); Alertmanager's
    webhook_config `max_alerts` keeps its bodies smaller."""

    runbook_min_similarity: float = Field(default=0.5, ge=0, le=1)
    """The incident digest names a knowledge-base document as the runbook of an incident without a
    `runbook_url` only when its best passage is at least this similar to the incident's title and description
    (cosine similarity of the embedding model); below it, 'no runbook found'."""

    log_format: Literal["json", "text"] = "json"
    """`steward serve`'s log lines: `json` (one object a line, with the correlation id of the Slack request)
    or `text`."""

    housekeeping_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How often `steward serve` does its housekeeping: expiring requests, reporting interrupted runs, and
    answering the questions of a replica that died (one not seen for three rounds)."""

    audit_key: SecretStr | None = None
    """The key (at least 32 characters) the audit log's MACs and checkpoints are signed with. A secret: never
    stored in the database, logged or shown. Unset: a random key generated once into `<data dir>/audit.key`
    (mode 0600), fine on one machine; in production set it, the same on every replica and wherever `steward
    audit verify` runs."""

    audit_checkpoint_path: Path | None = None
    """The append-only file the signed audit checkpoints (entry count and head) are added to. In production, a
    path the database's writers cannot rewrite (an append-only file, another volume). Unset: `<data
    dir>/audit-checkpoints.jsonl`."""

    audit_checkpoint_every: int = Field(default=100, ge=1)
    """A checkpoint of the audit log is signed at least every this many entries."""

    audit_checkpoint_seconds: float = Field(default=300.0, gt=0)
    """While `steward serve` runs, each replica signs a checkpoint this often when the audit log has grown
    (checked at each housekeeping round)."""

    audit_channel: str | None = None
    """Channel id (`C…`) where `steward serve` also posts each periodic audit checkpoint, a copy out of the
    database writers' reach. Unset: the checkpoint file only."""

    digest_misfire_grace_seconds: int = Field(default=600, ge=1)
    """A scheduled digest that could not fire on time (Steward was down) still posts within this many seconds
    of its time; later, that fire is skipped."""

    digests_file: Path = Path("digests.yaml")
    """The digest configuration: schedules, channels and drift monitors (paths in it are relative to its
    folder)."""

    # -- Slack (the names Slack's own tooling uses, without the STEWARD_ prefix) -------------------
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN"))
    """The bot token (`xoxb-…`) from the Slack app's OAuth page. Needed by `steward serve`."""

    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET")
    )
    """The app's signing secret; HTTP mode rejects requests whose signature does not match."""

    slack_app_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("SLACK_APP_TOKEN"))
    """App-level token (`xapp-…`, scope `connections:write`). Set: Socket Mode, no public URL."""

    slack_api_url: str | None = Field(default=None, validation_alias=AliasChoices("SLACK_API_URL"))
    """Base URL of the Slack Web API the bot calls (a proxy, or a local fake in tests)."""

    host: str = "0.0.0.0"  # noqa: S104 -- Slack must reach HTTP mode; bind 127.0.0.1 behind a local proxy
    """Interface `steward serve` listens on in HTTP mode."""

    port: int = Field(default=3000, ge=0, le=65535)
    """Port of HTTP mode (`--port` overrides)."""

    http_threads: int = Field(default=16, ge=2, le=256)
    """Threads of `steward serve`'s HTTP server. An agent's long-poll (`GET /api/v1/requests/{id}?wait=`)
    holds one for up to a minute: keep more threads than the agents' concurrent long-polls, so Slack's
    requests and the probes are still answered at once."""

    slack_workers: int = Field(default=4, ge=1, le=64)
    """Threads that answer after the acknowledgement (retrieval, rendering, posting)."""

    sticky_threads: bool = True
    """Answer follow-ups in a thread Steward has answered without a new mention. `/steward sticky off`
    overrides it for one channel."""

    answer_bots: Names = ()
    """Comma-separated bot ids (`B…`) whose messages Steward answers; other bots are ignored."""

    link_hosts: Names = ()
    """Comma-separated hosts Steward may link to in Slack besides STEWARD_DOCS_BASE_URL's
    (`grafana.example.com`, or `.example.com` for a domain and its subdomains); links to any other host, in
    documents or in an LLM's answer, are shown as text."""

    runbook_sources: NamesOrUnset = None
    """Comma-separated sources (an ingested folder's name, e.g. `knowledge`, or its path) whose documents
    approval cards may quote as an action's runbook. Unset: the one source, when only one folder is ingested;
    with several, none until this names it."""

    untrusted_sources: Names = ()
    """Comma-separated sources (names or folders) whose documents are answered from with a warning, ranked
    below the others and never quoted as a runbook."""

    experts_channel: str | None = None
    """Channel id (`C…`) where "Ask an expert" posts questions Steward could not answer. Unset: the owners of
    the nearest documents get a direct message."""

    guidance_inbox: Path = Path("knowledge/inbox")
    """Folder of the knowledge base where "Save as guidance" writes draft documents."""

    docs_base_url: str | None = None
    """Base URL for source links of documents without a `url` (e.g. a Git web view
    `https://git.example.com/kb/blob/main/knowledge/`); the document's path is appended."""

    channel_posts_per_second: float = Field(default=1.0, gt=0)
    """Pace of Steward's posts in one channel (Slack allows about one a second, with bursts)."""

    event_retention_seconds: int = Field(default=3600, ge=600)
    """How long delivered event ids are kept to drop Slack's retries and duplicates."""

    @field_validator("link_hosts")
    @classmethod
    def _host_names(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            if not re.fullmatch(r"\*?\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", host):
                raise ValueError(
                    f"{host!r} is not a host name; give names like grafana.example.com, or .example.com "
                    "for a domain and its subdomains (no scheme, port or path)"
                )
        return hosts

    @field_validator("audit_key")
    @classmethod
    def _long_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value().strip()) < KEY_MIN_CHARACTERS:
            raise ValueError(f"the audit key needs at least {KEY_MIN_CHARACTERS} characters: {KEY_ADVICE}")
        return key

    @field_validator("llm_base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"https?://[^/\s]+", url.strip()):
            raise ValueError(
                f"{url!r} is not an http(s) URL; give the API's base, e.g. http://localhost:11434/v1"
            )
        return url.strip() if url is not None else None

    @field_validator(
        "chroma_url",
        "llm",
        "llm_base_url",
        "llm_api_key",
        "llm_temperature",
        "database_url",
        "catalog_url",
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "slack_api_url",
        "experts_channel",
        "docs_base_url",
        "audit_key",
        "audit_checkpoint_path",
        "audit_channel",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `STEWARD_LLM=` in a shell or .env means "unset", not "a model called ''".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _records_apart_from_derived_files(self) -> Settings:
        # `--rebuild` may delete a damaged catalog file and the embedded Chroma folder: neither may be
        # (or hold) the records database.
        records = sqlite_file(self.resolved_database_url)
        catalog = sqlite_file(self.resolved_catalog_url)
        if records is not None and catalog is not None and same_file(records, catalog):
            raise ValueError(
                f"STEWARD_CATALOG_URL and STEWARD_DATABASE_URL name the same SQLite file {records}: the "
                "catalog is rebuilt by `steward ingest --rebuild`, the records never are, so they need "
                "two files. Point STEWARD_CATALOG_URL at another file (or unset it for catalog.db)."
            )
        chroma = self.chroma_path.resolve()
        for name, path in (("STEWARD_DATABASE_URL", records), ("STEWARD_CATALOG_URL", catalog)):
            if self.chroma_url is None and path is not None and path.is_relative_to(chroma):
                raise ValueError(
                    f"{name} puts a database inside {chroma}, the embedded Chroma folder that "
                    "`steward ingest --rebuild` may remove. Put the database file elsewhere."
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The records database URL, defaulting to SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'steward.db').resolve()}"

    @property
    def resolved_catalog_url(self) -> str:
        """The knowledge catalog's URL: its own SQLite file beside SQLite records, else the records
        database (its own tables there)."""
        if self.catalog_url:
            return self.catalog_url
        if self.database_url and sqlite_file(self.database_url) is None:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    @property
    def catalog_setting(self) -> str:
        """The variable that decides where the catalog is, for messages."""
        if self.catalog_url:
            return "STEWARD_CATALOG_URL"
        return "STEWARD_DATA_DIR" if sqlite_file(self.resolved_catalog_url) else "STEWARD_DATABASE_URL"

    @property
    def chroma_path(self) -> Path:
        """Where the embedded Chroma keeps its files."""
        return self.data_dir / "chroma"


def variable_name(field: str) -> str:
    """The environment variable of a setting (Slack's own names have no STEWARD_ prefix)."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"STEWARD_{field.upper()}"


def load_settings() -> Settings:
    """Read settings, turning pydantic's validation report into one clear message."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if not error["loc"]:  # a check across settings: its message names them
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            problems.append(f"{variable_name(str(error['loc'][0]))}: {error['msg']}")
        raise SettingsError("invalid setting(s): " + "; ".join(problems)) from None
