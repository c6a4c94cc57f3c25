"""The composition root: builds every service from Settings, once. Only this module picks implementations."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from bot.actions.approvals import ApprovalService
from bot.actions.executors.dispatch import allow_listed
from bot.actions.guarded import GuardedActions
from bot.actions.policy.gate import PolicyFolder
from bot.actions.proposals import Proposer
from bot.agents.callbacks import CallbackSender
from bot.agents.gateway import AgentGateway, AgentSettings
from bot.agents.registry import AgentRegistry
from bot.answers.deliveries import Deliveries
from bot.answers.gaps import GapService
from bot.answers.knowledge import KnowledgeBase
from bot.answers.llm import LLMSetupError, LLMWriter, build_chat_model
from bot.answers.questions import QuestionService
from bot.answers.retrieval import Retriever
from bot.answers.service import AnswerService
from bot.answers.sources import SourceTrust
from bot.config import Settings, SettingsError
from bot.incidents.records import IncidentStore
from bot.incidents.service import IncidentService
from bot.index.embedding import Embedder
from bot.index.vectors import VectorIndex
from bot.store.action_requests import ActionRequestStore
from bot.store.agents import AgentStore
from bot.store.audit_anchor import AuditAnchor, AuditKey, AuditKeyError, key_from_file, register_anchor
from bot.store.audit_checkpoints import CheckpointFile
from bot.store.catalog import Catalog
from bot.store.conversations import ConversationStore
from bot.store.engine import create_engine, sqlite_file
from bot.store.events import EventLedger, replica_name
from bot.store.schema import upgrade
from ingest.pipeline import Ingestor

if TYPE_CHECKING:  # Slack's modules load only in the commands that post (imported where they are used)
    from slack_sdk import WebClient

    from bot.digests.publishing import DigestPublisher
    from bot.digests.reports import ReportRecords
    from bot.incidents.alertmanager import AlertReceiver
    from bot.slack.app import SlackApp
    from bot.slack.digests import DigestPoster
    from bot.slack.posting import Poster
    from bot.slack.usergroups import SlackUserGroups
    from bot.store.digests import DriftHistory

log = logging.getLogger("steward.audit")


class Services:
    """Lazily built services sharing one catalog, one vector index and one embedding model."""

    def __init__(
        self, settings: Settings, chat_model: Any = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self._chat_model = chat_model
        self.clock = clock  # what the policy reads as now (tests pin it; freeze windows depend on it)

    def override(self, name: str, value: Any) -> None:
        """Use `value` as the service `name` instead of building it (tests swap in a shared embedder or
        an approval service with a pinned clock). Only before the service is first built or read."""
        attribute = getattr(type(self), name, None)
        if not isinstance(attribute, cached_property):
            raise AttributeError(f"Services has no service named {name!r} to override")
        if name in self.__dict__:
            raise RuntimeError(f"Services.{name} was already built; override it before first use")
        self.__dict__[name] = value

    @cached_property
    def catalog(self) -> Catalog:
        """The knowledge catalog: derived from the documents, kept apart from the records. Its tables are
        created here, once (a data dir never ingested into reads as an empty knowledge base)."""
        catalog = self.index_catalog
        catalog.ensure_schema()
        return catalog

    @cached_property
    def index_catalog(self) -> Catalog:
        """The catalog as `steward ingest` takes it: its tables not yet created, since ingest checks its
        paths before it writes anything, and `--rebuild` replaces a catalog too damaged to open."""
        settings = self.settings
        if settings.catalog_url is None and sqlite_file(settings.resolved_catalog_url) is not None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)  # catalog.db goes there
        records = settings.resolved_database_url
        return Catalog(settings.resolved_catalog_url, settings.catalog_setting, records_url=records)

    @cached_property
    def records(self) -> Engine:
        """The records database: conversations, action requests, approvals, the audit log, digests and
        incidents, migrated to the newest schema here, once; every store assumes it is. Nothing deletes
        or recreates it."""
        engine = self.records_engine
        upgrade(engine)
        return engine

    @cached_property
    def records_engine(self) -> Engine:
        """The records database's engine, not yet migrated (`records` is the one the stores use)."""
        if self.settings.database_url is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            engine = create_engine(self.settings.resolved_database_url)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise SettingsError(
                f"STEWARD_DATABASE_URL is not a usable SQLAlchemy URL ({exc}); use for example "
                "sqlite:///path/steward.db or postgresql+psycopg://user@host/db"
            ) from None
        register_anchor(engine, self.audit_anchor)  # every audit entry it holds is sealed with the key
        return engine

    @cached_property
    def audit_anchor(self) -> AuditAnchor:
        """The audit log's key (STEWARD_AUDIT_KEY or `<data dir>/audit.key`) and checkpoint file."""
        settings = self.settings
        try:
            secret = settings.audit_key
            key = (
                AuditKey.from_text(secret.get_secret_value(), "STEWARD_AUDIT_KEY")
                if secret is not None
                else key_from_file(settings.data_dir / "audit.key")
            )
        except AuditKeyError as exc:
            raise SettingsError(str(exc)) from None
        if secret is None and sqlite_file(settings.resolved_database_url) is None:
            log.warning(
                "STEWARD_AUDIT_KEY is unset: this replica signs the shared audit log with %s, its own key "
                "unless every replica shares that file; set STEWARD_AUDIT_KEY, the same everywhere",
                key.source,
            )
        path = settings.audit_checkpoint_path or settings.data_dir / "audit-checkpoints.jsonl"
        return AuditAnchor(
            key,
            CheckpointFile(path),
            every=settings.audit_checkpoint_every,
            every_seconds=settings.audit_checkpoint_seconds,
            replica=replica_name(),
            clock=self.clock,
        )

    @cached_property
    def vectors(self) -> VectorIndex:
        """Chroma, embedded or server."""
        if self.settings.chroma_url:
            return VectorIndex(self.settings.chroma_collection, url=self.settings.chroma_url)
        return VectorIndex(self.settings.chroma_collection, path=self.settings.chroma_path)

    @cached_property
    def embedder(self) -> Embedder:
        """The packaged embedding model."""
        return Embedder(
            batch_size=self.settings.embedding_batch_size,
            max_word_pieces=self.settings.embedded_word_pieces,
        )

    @cached_property
    def conversations(self) -> ConversationStore:
        """Delivered events, sticky threads, answers, feedback and knowledge gaps (records)."""
        return ConversationStore(self.records)

    def migrate(self) -> None:
        """Bring the catalog and the records to the current schema now, not on first use: `steward serve`
        starts with it (building `catalog` and `records` migrates them, once)."""
        _ = self.catalog, self.records

    @cached_property
    def slack_app(self) -> SlackApp:
        """The Bolt app of `steward serve` over these services (checks the bot token with Slack)."""
        from bot.slack.app import build_app

        return build_app(
            self.settings,
            lambda: self.answers,
            self.questions,
            self.gaps,
            self.knowledge,
            self.deliveries,
            actions=self.guarded_actions,
            policy=self.policy,
            proposer=self.proposer,
            client=self.slack_client,
            incidents=self.incident_service,
        )

    @cached_property
    def alerts(self) -> AlertReceiver:
        """Alertmanager's webhook receiver (`POST /hooks/alertmanager`), into the incident store."""
        from bot.incidents.alertmanager import AlertReceiver

        token = self.settings.alertmanager_token
        secret = token.get_secret_value() if token else None
        return AlertReceiver(self.incidents, secret, max_bytes=self.settings.alertmanager_max_bytes)

    @cached_property
    def incidents(self) -> IncidentStore:
        """Alert episodes from Alertmanager and their incident threads (records)."""
        return IncidentStore(self.records)

    @cached_property
    def incident_service(self) -> IncidentService:
        """Incidents people declare, resolve and acknowledge (the `/steward incident` command)."""
        return IncidentService(self.incidents, clock=self.clock)

    @cached_property
    def digest_publisher(self) -> DigestPublisher:
        """The digests of `STEWARD_DIGESTS_FILE`: run, claimed once per scheduled fire, published to an
        outlet (`steward serve` and `steward digest run --post` both publish through this one)."""
        from bot.digests.config import load_digests
        from bot.digests.drift_digest import knowledge_runbooks
        from bot.digests.publishing import DigestPublisher
        from bot.incidents.digest import incident_runbooks
        from bot.store.digests import DigestRuns

        settings = self.settings
        return DigestPublisher(
            config=lambda: load_digests(settings.digests_file),
            runs=DigestRuns(self.records),
            history=self.drift_history,
            policy=self.policy,
            catalog=lambda: self.catalog,
            records=lambda: self.report_records,
            incident_runbooks=incident_runbooks(lambda: self.retriever, settings.runbook_min_similarity),
            find_runbook=knowledge_runbooks(lambda: self.retriever),
        )

    @cached_property
    def drift_history(self) -> DriftHistory:
        """The drift results of published digests (each model's trend), in the records."""
        from bot.store.digests import DriftHistory

        return DriftHistory(self.records)

    @cached_property
    def report_records(self) -> ReportRecords:
        """The repositories the governance and incident digests read."""
        from bot.digests.reports import ReportRecords
        from bot.store.action_requests import ActionRequestStore

        return ReportRecords(ActionRequestStore(self.records), self.conversations, self.incidents)

    def digest_poster(self, poster: Poster | None = None) -> DigestPoster:
        """The digest publisher posting in Slack through `poster` (the Slack app's, when serving) or a
        poster of its own paced by STEWARD_CHANNEL_POSTS_PER_SECOND (`steward digest run --post`)."""
        from bot.slack.digests import DigestPoster
        from bot.slack.pacing import ChannelPacer
        from bot.slack.posting import Poster

        if poster is None:
            poster = Poster(ChannelPacer(self.settings.channel_posts_per_second))
        return DigestPoster(self.digest_publisher, poster)

    @cached_property
    def slack_client(self) -> WebClient:
        """The Slack Web API client for the CLI's Slack calls (`digest run --post`, user groups in
        `policy check`); `steward serve` builds its own with the Bolt app."""
        from bot.slack.app import web_client

        return web_client(self.settings)

    @cached_property
    def slack_groups(self) -> SlackUserGroups:
        """Members of the Slack user groups (`S…`) the policy files name, as `steward serve` looks them up."""
        from bot.slack.usergroups import SlackUserGroups

        return SlackUserGroups(self.slack_client)

    @cached_property
    def policy(self) -> PolicyFolder:
        """The policy folder, reloaded when its files change; with SLACK_BOT_TOKEN set, the `S…` groups in
        it are Slack user groups, looked up through the Slack client the Bolt app uses too."""
        if self.settings.slack_bot_token is None:
            return PolicyFolder(self.settings.policies_dir)
        return PolicyFolder(self.settings.policies_dir, resolver=self.slack_groups)

    @cached_property
    def approvals(self) -> ApprovalService:
        """Action requests, approvals and execution claims, audited, in the records database."""
        return ApprovalService(ActionRequestStore(self.records), self.policy, clock=self.clock)

    @cached_property
    def agent_registry(self) -> AgentRegistry:
        """AI agents and their tokens (`steward agents`); authenticates the agent API and MCP."""
        return AgentRegistry(AgentStore(self.records), clock=self.clock)

    @cached_property
    def callbacks(self) -> CallbackSender:
        """The agents' signed callbacks, sent once they are due (an outbox in the records database)."""
        return CallbackSender(ActionRequestStore(self.records), AgentStore(self.records), clock=self.clock)

    @cached_property
    def agent_gateway(self) -> AgentGateway:
        """AI agents' requests and questions (the HTTP API and MCP); with Slack configured, their cards
        are posted through the Slack app's guarded-action flows."""
        outlet = None
        if self.settings.slack_bot_token is not None:
            from bot.slack.agent_outlet import SlackAgentOutlet

            flows = self.slack_app.actions
            outlet = None if flows is None else SlackAgentOutlet(flows, self.slack_client)
        settings = AgentSettings(
            channel=self.settings.agent_channel,
            callback_hosts=self.settings.agent_callback_hosts,
            waits_per_agent=self.settings.agent_long_polls,
        )
        return AgentGateway(
            self.guarded_actions,
            self.policy,
            self.questions,
            outlet,
            settings,
            callbacks=self.callbacks,
            clock=self.clock,
        )

    @cached_property
    def guarded_actions(self) -> GuardedActions:
        """Requests, clicks and housekeeping of guarded actions as single calls over `approvals`; commands
        run only the deployment's allowed programs."""
        return GuardedActions(self.approvals, allow_listed(self.settings.allowed_programs))

    @cached_property
    def ingestor(self) -> Ingestor:
        """Runs `steward ingest`; accepted guidance closes the knowledge gap it answers."""
        _ = self.records_engine  # a STEWARD_DATABASE_URL SQLAlchemy cannot use is named before ingesting
        return Ingestor(
            self.index_catalog,
            self.vectors,
            self.embedder,
            self.settings.max_file_bytes,
            # the records are opened (and migrated) only when guidance closes a gap: ingest needs the
            # index alone, and leaves a damaged records database as it is
            close_gaps=lambda gaps: self.conversations.close_gaps(gaps),
        )

    @cached_property
    def retriever(self) -> Retriever:
        """Hybrid retrieval over the catalog and the vectors."""
        trust = SourceTrust(self.settings.runbook_sources, self.settings.untrusted_sources)
        return Retriever(self.catalog, self.vectors, self.embedder, trust=trust)

    def close(self) -> None:
        """Release the database pools and the vector store's client (those that were opened)."""
        if "index_catalog" in self.__dict__:
            self.index_catalog.dispose()
        if "records_engine" in self.__dict__:
            self.records_engine.dispose()
        if "vectors" in self.__dict__:
            self.vectors.close()

    @cached_property
    def chat_model(self) -> Any:
        """The chat model named by `STEWARD_LLM` (or handed in), or None: no LLM."""
        settings = self.settings
        spec = settings.llm
        if self._chat_model is not None or not spec:
            return self._chat_model
        try:
            return build_chat_model(
                spec,
                base_url=settings.llm_base_url,
                api_key=settings.llm_api_key,
                temperature=settings.llm_temperature,
                timeout_seconds=settings.llm_timeout_seconds,
            )
        except LLMSetupError as exc:
            raise SettingsError(
                f"STEWARD_LLM={spec!r} cannot be used: {exc}. Or unset STEWARD_LLM."
            ) from None

    @cached_property
    def writer(self) -> LLMWriter | None:
        """The LLM answer writer when an LLM is configured."""
        model = self.chat_model
        if model is None:
            return None
        return LLMWriter(
            model,
            self.settings.llm or type(model).__name__,
            self.settings.llm_timeout_seconds,
            server=self.settings.llm_base_url,
        )

    @cached_property
    def proposer(self) -> Proposer | None:
        """With an LLM configured: it may propose action requests (tool calling), which people confirm."""
        model = self.chat_model
        return None if model is None else Proposer(model, self.settings.llm_timeout_seconds)

    @cached_property
    def questions(self) -> QuestionService:
        """Answers questions and records them (the answer, the gap, the thread): `steward ask` and Slack."""
        return QuestionService(lambda: self.answers, self.conversations, self.settings.sticky_threads)

    @cached_property
    def gaps(self) -> GapService:
        """Feedback and knowledge gaps: routed to the experts (STEWARD_EXPERTS_CHANNEL or the owners) and
        drafted into STEWARD_GUIDANCE_INBOX."""
        settings = self.settings
        return GapService(self.conversations, settings.guidance_inbox, settings.experts_channel)

    @cached_property
    def knowledge(self) -> KnowledgeBase:
        """The state of the knowledge base (App Home) and its documents (the assistant pane's prompts)."""
        return KnowledgeBase(lambda: self.catalog, self.conversations)

    @cached_property
    def deliveries(self) -> Deliveries:
        """Slack events claimed once across replicas; this replica's heartbeat and its take-over of the
        questions a dead replica left unanswered."""
        ledger = EventLedger(self.records, replica_name())
        return Deliveries(self.conversations, self.settings.event_retention_seconds, ledger)

    @cached_property
    def answers(self) -> AnswerService:
        """The answer service used by the CLI and Slack alike."""
        return AnswerService(
            self.retriever,
            abstain_below=self.settings.abstain_below,
            sources=self.settings.sources,
            writer=self.writer,
        )


def build(settings: Settings, chat_model: Any = None, clock: Callable[[], float] = time.time) -> Services:
    """The application for `settings`: its stores, services, Slack client and app, digest poster and
    incident store, each built on first use and once (the CLI and `steward serve` start here)."""
    return Services(settings, chat_model=chat_model, clock=clock)
