"""The ``encoder:`` provider: one L2-normalised vector per text from a local encoder model.

Pooling (``ModelSpec.pooling``) follows each model card:

- ``sentence-transformers``: the model's own modules (all-MiniLM-L6-v2: mean pooling, then normalisation).
- ``cls``: the [CLS] vector of the last layer (SapBERT's card).
- ``mean``: the attention-masked mean of the last layer's token vectors. BioLinkBERT's and BiomedBERT's cards
  state no pooling (they are not sentence-embedding models); this is our choice, the same one
  sentence-transformers makes when it wraps a plain encoder.

With no pooling given, a folder holding ``modules.json`` is a sentence-transformers model; anything else gets mean.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from runner.core.errors import ModelUnavailable, ProviderError
from runner.core.settings import GenerationSettings
from runner.providers.base import Embedder
from runner.providers.catalog import ModelSpec
from runner.providers.local.devices import cuda_available, free_accelerator_memory, is_out_of_memory
from runner.providers.local.hub import locate_weights, not_downloadable, quiet_loading_bars

log = logging.getLogger("runner")

# BERT-style encoders take 512 positions; longer texts are cut (the end of a long question matters less here).
MAX_TOKENS = 512


class EncoderEmbedder(Embedder):
    """A local encoder model returning unit-length embeddings."""

    def __init__(self, spec: ModelSpec, settings: GenerationSettings) -> None:
        super().__init__(spec, settings)
        self.model: Any = None
        self.tokenizer: Any = None
        self.pooling = spec.pooling or "mean"
        self.device = "cpu"

    def load(self) -> None:
        """Load the encoder once; raise ModelUnavailable when it cannot run here."""
        if self.spec.needs_gpu and not cuda_available():
            raise ModelUnavailable(f"{self.spec.name} needs a CUDA GPU and none is available here")
        source = locate_weights(self.spec)
        if self.spec.pooling is None:
            folder = Path(source.location)
            self.pooling = "sentence-transformers" if (folder / "modules.json").exists() else "mean"
        self.device = "cuda" if cuda_available() else "cpu"
        remote = {"trust_remote_code": True} if self.spec.trust_remote_code else {}
        quiet_loading_bars()
        try:
            if self.pooling == "sentence-transformers":
                from sentence_transformers import SentenceTransformer

                self.model = SentenceTransformer(source.location, device=self.device, **remote)
            else:
                import transformers

                self.tokenizer = transformers.AutoTokenizer.from_pretrained(source.location, **remote)
                self.model = transformers.AutoModel.from_pretrained(source.location, **remote).to(self.device)
                self.model.eval()
        except OSError as exc:
            if source.embedded or source.location != self.spec.model_id:
                raise ModelUnavailable(f"{self.spec.name}: cannot read the weights in {source.location}: {exc}") \
                    from None
            raise not_downloadable(self.spec, exc) from None
        except ImportError as exc:
            raise ModelUnavailable(f"{self.spec.name}: {exc}; try: pip install sentence-transformers") from None

    def close(self) -> None:
        """Drop the model and free its memory."""
        self.model = None
        self.tokenizer = None
        free_accelerator_memory()

    def classify(self, error: BaseException) -> ProviderError:
        """Out-of-memory is reported plainly; everything else keeps the default classification."""
        if is_out_of_memory(error):
            return ProviderError("GPU out of memory while embedding; lower --batch-size", retryable=False)
        return super().classify(error)

    def embed_batch(self, texts: list[str]) -> list[list[float]]:
        """Embed one chunk of texts; every vector has unit L2 norm."""
        if self.model is None:
            raise ModelUnavailable(f"{self.spec.name} is not loaded (call load() first)")
        if self.pooling == "sentence-transformers":
            vectors = self.model.encode(texts, batch_size=len(texts), normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
            return [[float(x) for x in row] for row in vectors]
        return self._pooled(texts)

    def _pooled(self, texts: list[str]) -> list[list[float]]:
        import torch

        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
        return pooled.cpu().tolist()
