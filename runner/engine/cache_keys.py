"""The cache key of an answer: what must be equal for a saved answer to be reused on a re-run."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.core.personas import Persona
    from runner.core.questions import Question
    from runner.core.settings import GenerationSettings
    from runner.providers.catalog import ModelSpec

KEY_VERSION = 1


def answer_key(question: Question, persona: Persona, spec: ModelSpec, settings: GenerationSettings) -> str:
    """SHA-256 over the question's content, the persona text, the model and the settings that matter.

    Embeddings do not depend on the persona or generation settings, so those are left out for encoders.
    """
    parts: dict[str, object] = {"v": KEY_VERSION, "question": question.content_hash(),
                                "model": spec.answer_key_fields()}
    if spec.kind == "generator":
        parts["persona"] = persona.sha256
        parts["settings"] = settings.answer_key_fields()
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
