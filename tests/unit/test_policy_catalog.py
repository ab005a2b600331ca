"""The built-in provider catalog and the merge with a user's provider config."""

from __future__ import annotations

from dataclasses import fields
from types import MappingProxyType

import pytest

from relaygate.config.policy_schema import ProviderFacts
from relaygate.policy import CATALOG, Facts, catalog_entry, merge_catalog, provider_facts

REQUIRED = {
    "openai", "anthropic", "gemini", "azure-openai", "mistral", "deepseek", "dashscope-intl",
    "dashscope-cn", "moonshot", "zhipu", "qianfan", "vllm", "ollama", "llamacpp",
}  # fmt: skip


class Provider(ProviderFacts):
    """Stand-in for the lead's provider model: existing fields + the ProviderFacts mixin."""

    jurisdiction: str | None = None
    regions: list[str] = []


def test_catalog_covers_the_issue_list() -> None:
    assert REQUIRED <= set(CATALOG)
    assert isinstance(CATALOG, MappingProxyType)
    with pytest.raises(TypeError):
        CATALOG["x"] = CATALOG["openai"]  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_known_fact_is_cited(name: str) -> None:
    entry = CATALOG[name]
    names = {f.name for f in fields(entry)}
    assert set(entry.sources) <= names
    for fact in ("jurisdiction", "regions", "data_retention_days", "trains_on_inputs"):
        if getattr(entry, fact) is not None:
            assert entry.sources.get(fact, "").startswith("https://"), f"{name}.{fact} has no source"
    assert entry.protocol in ("openai", "anthropic", "gemini")
    assert entry.base_url is None or entry.base_url.startswith(("http://", "https://"))
    assert entry.notes


def test_self_hosted_have_no_facts() -> None:
    for name in ("vllm", "ollama", "llamacpp"):
        e = CATALOG[name]
        assert (e.jurisdiction, e.regions, e.data_retention_days, e.trains_on_inputs) == (
            None,
            None,
            None,
            None,
        )
        assert "self-hosted" in e.tags and "operator" in e.notes


def test_some_documented_facts() -> None:
    assert CATALOG["openai"].facts() == Facts("US", (), 30, False, ("zdr-available",))
    assert CATALOG["deepseek"].jurisdiction == "CN" and CATALOG["deepseek"].trains_on_inputs is None
    assert CATALOG["gemini-free"].trains_on_inputs is True
    assert CATALOG["anthropic"].protocol == "anthropic" and CATALOG["gemini"].protocol == "gemini"
    assert CATALOG["dashscope-cn"].regions == ("CN",) and CATALOG["dashscope-intl"].jurisdiction == "SG"


def test_catalog_entry_lookup() -> None:
    assert catalog_entry("mistral").jurisdiction == "FR"
    with pytest.raises(ValueError, match="unknown catalog entry 'nope'"):
        catalog_entry("nope")


def test_merge_user_wins_field_by_field() -> None:
    merged = merge_catalog(
        CATALOG["openai"],
        {"base_url": "https://eu.api.openai.com/v1", "regions": ["eu"], "data_retention_days": 0, "tags": []},
    )
    assert merged.base_url == "https://eu.api.openai.com/v1"
    assert merged.regions == ("eu",) and merged.facts().regions == ("EU",)
    assert merged.data_retention_days == 0 and merged.tags == ()
    assert merged.jurisdiction == "US" and merged.trains_on_inputs is False  # inherited
    assert CATALOG["openai"].data_retention_days == 30  # catalog untouched
    # An explicit None wins too: the user declares the fact unknown.
    assert merge_catalog(CATALOG["openai"], {"trains_on_inputs": None}).trains_on_inputs is None
    with pytest.raises(ValueError, match="cannot override"):
        merge_catalog(CATALOG["openai"], {"name": "x"})


def test_provider_facts_from_config() -> None:
    p = Provider.model_validate({"catalog": "mistral", "regions": ["FR", "DE"]})
    assert provider_facts(p) == Facts("FR", ("FR", "DE"), 30, False, ("zdr-available",))
    p = Provider.model_validate({"catalog": "deepseek", "data_retention_days": 30, "trains_on_inputs": False})
    assert provider_facts(p) == Facts("CN", ("CN",), 30, False)
    p = Provider.model_validate({"catalog": "openai", "jurisdiction": None})
    assert provider_facts(p).jurisdiction is None
    p = Provider.model_validate(
        {"catalog": "vllm", "jurisdiction": "de", "regions": ["DE"], "data_retention_days": 0}
    )
    assert provider_facts(p) == Facts("DE", ("DE",), 0, None, ("self-hosted",))


def test_provider_facts_without_catalog() -> None:
    p = Provider.model_validate({"jurisdiction": "US", "tags": ["x"]})
    assert provider_facts(p) == Facts("US", (), None, None, ("x",))
    assert provider_facts(Provider()) == Facts()
    with pytest.raises(ValueError, match="unknown catalog entry"):
        provider_facts(Provider.model_validate({"catalog": "nope"}))
