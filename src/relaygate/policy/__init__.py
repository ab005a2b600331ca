"""Jurisdiction policy: which deployments may serve a request, and why the others may not.

Public surface (see each module for details):

- ``model``: ``RequestFacts``, ``Candidate``, ``Facts``, ``Exclusion``, ``Decision``.
- ``engine``: ``compile_policy(cfg) -> CompiledPolicy`` (raises ``PolicyError``) and the pure
  ``decide(request, candidates, policy, cutoffs) -> Decision``.
- ``catalog``: ``CATALOG`` of well-known providers with cited facts, ``provider_facts``, ``merge_catalog``.
- ``data_class``: ``effective_data_class`` and the ``x-relaygate-data-class`` header.
- ``pii``: ``detect_pii(text)`` (entity types only) and ``messages_text(messages)``.

Importing this package is cheap: the CEL library, phonenumbers and python-stdnum load lazily.
"""

from relaygate.policy.catalog import CATALOG, CatalogEntry, catalog_entry, merge_catalog, provider_facts
from relaygate.policy.data_class import DATA_CLASS_HEADER, effective_data_class, parse_data_class
from relaygate.policy.engine import CompiledPolicy, PolicyError, compile_policy, decide
from relaygate.policy.model import Candidate, Decision, Exclusion, Facts, RequestFacts
from relaygate.policy.pii import detect_pii, messages_text

__all__ = [
    "CATALOG",
    "DATA_CLASS_HEADER",
    "Candidate",
    "CatalogEntry",
    "CompiledPolicy",
    "Decision",
    "Exclusion",
    "Facts",
    "PolicyError",
    "RequestFacts",
    "catalog_entry",
    "compile_policy",
    "decide",
    "detect_pii",
    "effective_data_class",
    "merge_catalog",
    "messages_text",
    "parse_data_class",
    "provider_facts",
]
