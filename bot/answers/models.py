"""What the answer service returns: plain pydantic models, shared by the CLI, `--json` and Slack."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Citation(BaseModel):
    """A source of an answer, numbered as the answer cites it ([1] is the first)."""

    path: str
    title: str
    section: str
    url: str | None = None
    status: str | None = None
    owner: str | None = None
    kind: str | None = None
    review_by: str | None = None
    superseded_by: str | None = None
    source: str | None = Field(
        default=None,
        description="The document's source (ingested folder), named when the catalog holds several or it is "
        "untrusted; None for the one source of a catalog.",
    )
    untrusted: bool = False  # from a source in STEWARD_UNTRUSTED_SOURCES


class Passage(BaseModel):
    """A retrieved chunk with its fused score."""

    path: str
    section: str
    text: str
    score: float


class Answer(BaseModel):
    """Steward's reply to one question."""

    question: str
    answer: str
    abstained: bool
    confidence: float = Field(ge=0, le=1)
    citations: list[Citation] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list, description="Who might know, when Steward abstains.")
    written_by: str = Field(default="extractive", description="'extractive' or the LLM spec that wrote it.")
    fallback_reason: str | None = Field(default=None, description="Why an LLM answer was not used.")
    retrieved: list[Passage] = Field(default_factory=list, exclude=True)

    def public_json(self) -> dict[str, object]:
        """The documented `--json` shape."""
        return {
            "answer": self.answer,
            "abstained": self.abstained,
            "confidence": round(self.confidence, 3),
            "citations": [
                {
                    "path": c.path,
                    "title": c.title,
                    "section": c.section,
                    "url": c.url,
                    "status": c.status,
                    "owner": c.owner,
                    "source": c.source,
                    "untrusted": c.untrusted,
                }
                for c in self.citations
            ],
            "warnings": self.warnings,
            "owners": self.owners,
        }
