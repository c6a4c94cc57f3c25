"""Follow-up questions in a thread: turn "and for staging?" into a question retrieval can use."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.index.lexical import terms

# Openers that only make sense as a continuation of the previous question.
_CONTINUATION = re.compile(
    r"^\s*(and|also|but|or|so|then|what about|how about|same for|what if|and if|for|in|on|with|without)\b",
    re.IGNORECASE,
)
_REFERENCE = re.compile(
    r"\b(it|its|that|this|those|these|they|them|there|same|above|previous)\b", re.IGNORECASE
)
# A question with at least this many content words stands on its own.
_SELF_CONTAINED_TERMS = 5


def standalone_question(question: str, earlier: Sequence[str]) -> str:
    """The question to search for: a follow-up is read together with the thread's previous question."""
    previous = next((turn.strip() for turn in reversed(earlier) if turn.strip()), "")
    if not previous:
        return question
    content = terms(question)
    follows_up = (
        _CONTINUATION.match(question) is not None
        or _REFERENCE.search(question) is not None
        or len(content) < _SELF_CONTAINED_TERMS
    )
    if not follows_up:
        return question
    return f"{previous}\n{question}"
