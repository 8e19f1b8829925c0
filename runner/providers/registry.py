"""Provider declarations: each provider is declared once, as a ``ProviderInfo``, known without importing it.

Everything that needs a provider's facts reads its declaration: model names (``catalog.resolve_model``: the
base-URL variable), the ``models`` listing, ``--quantize``/``--dtype``/``--trust-remote-code`` (``local_flags``),
the engine (``is_concurrent``, ``capabilities``) and the provider itself (``Provider.info``: its key variables).

Built-in providers are declared in ``BUILTIN``. Third-party providers come from installed packages through the
entry-point group ``medical_model_runner.providers``: the entry point's name is the provider name and its value
names a ``ProviderInfo`` object (``package.module:OBJECT``). Entry points are read only when a name that is not
built-in is looked up or the registry is listed; the provider's class (``target``) is imported only when one
of its models runs. A plugin that cannot be loaded, or that would replace a provider already declared, is
skipped with one warning line; everything else goes on working.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import re
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from runner.core.errors import ModelUnavailable, UsageError, did_you_mean

log = logging.getLogger("runner")

ENTRY_POINT_GROUP = "medical_model_runner.providers"
KINDS = ("generator", "embedder")
CAPABILITIES = ("generate", "embed", "loglik")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ProviderInfo:
    """Everything known about a provider without importing it: its one declaration.

    ``name`` is the part before the colon in ``name:model-id``; ``target`` is ``module:Class``, imported only
    when a model of this provider runs. ``concurrent`` providers (APIs) are asked one request at a time with
    many in flight (``agenerate``); the others (local models) are given batches (``generate``).
    ``concurrent_models`` lists model ids of a batched provider that run concurrently all the same.
    """

    name: str
    target: str
    kind: str = "generator"  # "generator" or "embedder"
    packages: tuple[str, ...] = ()  # import names that must be present
    pip: str = ""  # what to pip install when they are not
    key_env_vars: tuple[str, ...] = ()  # API key variables, the first one preferred
    description: str = ""
    concurrent: bool = False  # answered one request at a time, many in flight (APIs)
    # The request kinds it serves: "generate" (free-text answers), "embed" (vectors), "loglik" (log-likelihoods).
    capabilities: tuple[str, ...] = ("generate",)
    base_url_env: str = ""  # variable naming another server (recorded on the model's spec)
    local_flags: bool = False  # --quantize, --dtype and --trust-remote-code apply to its models
    concurrent_models: tuple[str, ...] = ()  # model ids run concurrently although the provider is batched
    model_hint: str = "<model>"  # what goes after the colon, for the listing
    origin: str = "built-in"  # "built-in", or "plugin <distribution>" (set when loaded)

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            problems.append(f"name {self.name!r} is not a simple name (letters, digits, _ . -)")
        if not isinstance(self.target, str) or not re.match(r"^[\w.]+:\w+$", self.target):
            problems.append(f"target {self.target!r} is not 'module:Class'")
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        unknown = [c for c in self.capabilities if c not in CAPABILITIES]
        if not self.capabilities or unknown or isinstance(self.capabilities, str):
            problems.append(f"capabilities {self.capabilities!r} must name some of {', '.join(CAPABILITIES)}")
        for field in ("packages", "key_env_vars", "concurrent_models"):
            if isinstance(getattr(self, field), str):
                problems.append(f"{field} must be a tuple of strings, not a string")
        if not isinstance(self.concurrent, bool) or not isinstance(self.local_flags, bool):
            problems.append("concurrent and local_flags must be True or False")
        if problems:
            raise ValueError("invalid provider declaration: " + "; ".join(problems))


BUILTIN: tuple[ProviderInfo, ...] = (
    ProviderInfo("fake", "runner.providers.fake:FakeGenerator",
                 description="deterministic offline test provider (fake:echo, fake:fail, ...)",
                 capabilities=("generate", "loglik"), concurrent_models=("async-echo",), model_hint="echo"),
    ProviderInfo("hf", "runner.providers.local.hf:HFGenerator", "generator",
                 ("torch", "transformers", "accelerate"), "pip install torch transformers accelerate",
                 description="local Hugging Face generative model", capabilities=("generate", "loglik"),
                 local_flags=True, model_hint="<hub-id>"),
    ProviderInfo("encoder", "runner.providers.local.encoder:EncoderEmbedder", "embedder",
                 ("torch", "transformers", "sentence_transformers"),
                 "pip install torch transformers sentence-transformers",
                 description="local encoder model returning embeddings", capabilities=("embed",),
                 model_hint="<hub-id>"),
    ProviderInfo("openai", "runner.providers.api.openai:OpenAIGenerator", "generator", ("openai",),
                 "pip install openai", ("OPENAI_API_KEY",), concurrent=True, base_url_env="OPENAI_BASE_URL",
                 description="OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp)",
                 capabilities=("generate", "loglik")),
    ProviderInfo("gemini", "runner.providers.api.gemini:GeminiGenerator", "generator", ("google.genai",),
                 "pip install google-genai", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), concurrent=True,
                 base_url_env="GOOGLE_GEMINI_BASE_URL", description="Google Gemini through the google-genai SDK"),
)


class ProviderRegistry(MutableMapping[str, ProviderInfo]):
    """Provider name -> declaration: the built-ins, then the plugins (read on first need, once)."""

    def __init__(self, builtin: tuple[ProviderInfo, ...], group: str = ENTRY_POINT_GROUP) -> None:
        self._entries = {info.name: info for info in builtin}
        self._group = group
        self._plugins_read = False

    def _everything(self) -> dict[str, ProviderInfo]:
        if not self._plugins_read:
            self._plugins_read = True
            self._read_plugins()
        return self._entries

    def _read_plugins(self) -> None:
        try:
            found = sorted(entry_points(group=self._group), key=lambda ep: ep.name)
        except Exception as exc:  # noqa: BLE001 - broken metadata must not stop the tool
            log.warning("warning: cannot read the provider plugins (%s: %s); none loaded", type(exc).__name__, exc)
            return
        for ep in found:
            origin = f"plugin {_distribution(ep)}"
            taken = self._entries.get(ep.name)
            if taken is not None:
                log.warning("warning: provider plugin %r (%s, %s) skipped: the name is taken by the %s provider",
                            ep.name, ep.value, origin, taken.origin)
                continue
            try:
                info = load_declaration(ep)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the others
                log.warning("warning: provider plugin %r (%s, %s) skipped: %s: %s", ep.name, ep.value, origin,
                            type(exc).__name__, exc)
                continue
            self._entries[ep.name] = dataclasses.replace(info, origin=origin)

    def __getitem__(self, name: str) -> ProviderInfo:
        if name in self._entries:
            return self._entries[name]
        return self._everything()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._everything()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._everything()))

    def __len__(self) -> int:
        return len(self._everything())

    def __setitem__(self, name: str, info: ProviderInfo) -> None:
        self._entries[name] = info

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def reload_plugins(self) -> None:
        """Forget the plugins read so far; the next lookup reads the entry points again."""
        self._entries = {name: info for name, info in self._entries.items() if info.origin == "built-in"}
        self._plugins_read = False


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "of an unknown distribution"


def load_declaration(ep: EntryPoint) -> ProviderInfo:
    """Load one plugin's declaration: the entry point must name a ``ProviderInfo`` with the entry point's name."""
    info = ep.load()
    if not isinstance(info, ProviderInfo):
        raise TypeError(f"{ep.value} is a {type(info).__name__}, not a runner.providers.ProviderInfo")
    if info.name != ep.name:
        raise ValueError(f"{ep.value} declares the provider {info.name!r}, but the entry point is named {ep.name!r}")
    return info


PROVIDERS: ProviderRegistry = ProviderRegistry(BUILTIN)


def provider_info(name: str) -> ProviderInfo:
    """The declaration of a provider name; an unknown name lists the valid ones."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise UsageError(f"unknown provider {name!r}{did_you_mean(name, PROVIDERS)}; known providers: "
                         f"{', '.join(PROVIDERS)}") from None


def is_concurrent(spec: Any) -> bool:
    """True for models the engine drives concurrently: a ``concurrent`` provider's, or one its ``concurrent_models``
    names (``fake:async-echo``)."""
    info = provider_info(spec.provider)
    return info.concurrent or spec.model_id in info.concurrent_models


def missing_packages(info: ProviderInfo) -> list[str]:
    """Import names of the provider's packages that are not installed (checked without importing)."""
    from importlib.util import find_spec

    missing = []
    for pkg in info.packages:
        try:
            if find_spec(pkg) is None:
                missing.append(pkg)
        except (ImportError, ValueError):
            missing.append(pkg)
    return missing


def load_provider_class(name: str) -> type:
    """Import the provider's class; a missing package names the pip command that installs it."""
    info = provider_info(name)
    missing = missing_packages(info)
    if missing:
        raise ModelUnavailable(f"provider {name!r} needs {', '.join(missing)}, not installed: {info.pip}")
    module_name, _, class_name = info.target.partition(":")
    hint = f"; try: {info.pip}" if info.pip else ""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelUnavailable(f"provider {name!r} could not be imported ({exc}){hint}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ModelUnavailable(f"provider {name!r}: {info.target} names no class ({info.origin})")
    return cls
