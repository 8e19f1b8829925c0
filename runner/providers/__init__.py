"""Providers: each declared once (``registry.ProviderInfo``), its class imported only when one of its models runs.

Listing providers, ``--help``, ``personas`` and ``models`` never import a backend (or torch). Third-party
providers are declared through the entry-point group ``medical_model_runner.providers``
(see ``docs/adding-a-provider.md``).
"""

from __future__ import annotations

from runner.providers.registry import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    PROVIDERS,
    ProviderInfo,
    ProviderRegistry,
    is_concurrent,
    load_provider_class,
    missing_packages,
    provider_info,
)

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "PROVIDERS", "ProviderInfo", "ProviderRegistry", "is_concurrent",
           "load_provider_class", "missing_packages", "provider_info"]
