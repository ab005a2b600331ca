"""Built-in catalog of well-known providers: endpoints, protocol and the facts policy tests.

Every fact cites the provider's own page, as read in 2026-11. ``None`` means the provider does
not document it (or documents it per account/deployment); unknown facts fail closed in policy,
so an operator who knows better states the fact in the provider's config, which wins field by
field (``merge_catalog`` / ``provider_facts``).

Conventions:
- ``jurisdiction``: ISO 3166-1 alpha-2 country of the operator that contracts for the API.
- ``regions``: where inference runs by default, when the provider documents it.
- ``data_retention_days``: the default upper bound for keeping prompts/outputs (abuse monitoring
  included); zero-data-retention programs exist for several and change this per account.
- ``trains_on_inputs``: default for the paid API; free tiers that differ get their own entry.
- ``protocol``: ``openai`` (the only one relaygate serves today), ``anthropic``, ``gemini``.

Self-hosted servers (``vllm``, ``ollama``, ``llamacpp``) have no fixed facts: jurisdiction,
regions and retention are the operator's own and must be set in config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from relaygate.policy.model import Facts

__all__ = ["CATALOG", "CatalogEntry", "catalog_entry", "merge_catalog", "provider_facts"]

Protocol = Literal["openai", "anthropic", "gemini"]
# Fields a provider config may override (names match the config schema).
_FACT_FIELDS = ("jurisdiction", "regions", "data_retention_days", "trains_on_inputs", "tags")
_OVERRIDABLE = ("base_url", "protocol", *_FACT_FIELDS)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One provider's documented defaults. ``sources`` maps a fact name to the page stating it."""

    name: str
    title: str
    protocol: Protocol
    base_url: str | None
    jurisdiction: str | None
    regions: tuple[str, ...] | None
    data_retention_days: int | None
    trains_on_inputs: bool | None
    tags: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""

    def facts(self) -> Facts:
        """The policy view of this entry (unknown regions become the empty tuple)."""
        return Facts(
            jurisdiction=self.jurisdiction,
            regions=self.regions or (),
            data_retention_days=self.data_retention_days,
            trains_on_inputs=self.trains_on_inputs,
            tags=self.tags,
        )


_OPENAI_DATA = "https://developers.openai.com/api/docs/guides/your-data"
_ANTHROPIC_RETENTION = "https://privacy.anthropic.com/en/articles/7996866-how-long-do-you-store-personal-data"
_GEMINI_TERMS = "https://ai.google.dev/gemini-api/terms"
_AZURE_PRIVACY = "https://learn.microsoft.com/en-us/legal/cognitive-services/openai/data-privacy"
_DASHSCOPE_URLS = "https://www.alibabacloud.com/help/en/model-studio/base-url"
_DASHSCOPE_REGIONS = "https://www.alibabacloud.com/help/en/model-studio/regions"

_ENTRIES = (
    CatalogEntry(
        "openai", "OpenAI API", "openai", "https://api.openai.com/v1", "US", None, 30, False,
        tags=("zdr-available",),
        sources={
            "base_url": "https://developers.openai.com/api/docs/guides/data-residency",
            "jurisdiction": "https://openai.com/policies/services-agreement/",
            "data_retention_days": _OPENAI_DATA,
            "trains_on_inputs": _OPENAI_DATA,
            "regions": "https://developers.openai.com/api/docs/guides/data-residency",
        },
        notes="Abuse-monitoring logs up to 30 days; not trained on since 2023-03-01 unless opted in. "
        "The global endpoint does not pin a region; data-residency projects use us./eu.api.openai.com "
        "(set base_url and regions yourself). EEA customers may contract with OpenAI's Irish entity.",
    ),
    CatalogEntry(
        "anthropic", "Anthropic Claude API", "anthropic", "https://api.anthropic.com", "US", None, 30, False,
        tags=("zdr-available",),
        sources={
            "base_url": "https://platform.claude.com/docs/en/manage-claude/data-residency",
            "regions": "https://platform.claude.com/docs/en/manage-claude/data-residency",
            "jurisdiction": "https://www.anthropic.com/legal/commercial-terms",
            "data_retention_days": _ANTHROPIC_RETENTION,
            "trains_on_inputs": "https://privacy.claude.com/en/articles/7996875-can-you-delete-data-that-i-sent-via-api",
        },
        notes="Inputs/outputs deleted within 30 days (longer if flagged under the Usage Policy). "
        "inference_geo defaults to 'global' (any geography); 'us' pins US. EEA/UK/CH customers "
        "contract with Anthropic Ireland, Limited; the operator is Anthropic, PBC (US).",
    ),
    CatalogEntry(
        "gemini", "Google Gemini API (paid tier)", "gemini",
        "https://generativelanguage.googleapis.com/v1beta", "US", None, 55, False,
        tags=("zdr-available",),
        sources={
            "jurisdiction": _GEMINI_TERMS,
            "data_retention_days": "https://ai.google.dev/gemini-api/docs/usage-policies",
            "trains_on_inputs": "https://ai.google.dev/gemini-api/docs/zdr",
        },
        notes="Paid Services: prompts not used to improve products; logged 55 days for abuse "
        "monitoring. Google LLC operates the API. Inference location is not documented.",
    ),
    CatalogEntry(
        "gemini-free", "Google Gemini API (free tier)", "gemini",
        "https://generativelanguage.googleapis.com/v1beta", "US", None, None, True,
        tags=("free-tier",),
        sources={"jurisdiction": _GEMINI_TERMS, "trains_on_inputs": _GEMINI_TERMS},
        notes="Unpaid Services: content is used to improve Google products and may be read by "
        "human reviewers; retention for that use is not stated.",
    ),
    CatalogEntry(
        "azure-openai", "Azure OpenAI (Azure Direct Models)", "openai", None, "US", None, 30, False,
        tags=("zdr-available",),
        sources={
            "jurisdiction": _AZURE_PRIVACY,
            "data_retention_days": _AZURE_PRIVACY,
            "trains_on_inputs": _AZURE_PRIVACY,
        },
        notes="base_url is per resource (https://<resource>.openai.azure.com/openai/v1) and the "
        "region is the resource's Azure region (global deployments may process anywhere): set both. "
        "Abuse monitoring keeps prompts up to 30 days unless modified abuse monitoring is approved.",
    ),
    CatalogEntry(
        "mistral", "Mistral AI La Plateforme (Scale plan)", "openai", "https://api.mistral.ai/v1", "FR",
        None, 30, False,
        tags=("zdr-available",),
        sources={
            "base_url": "https://docs.mistral.ai/admin/monitor-comply/zero-data-retention",
            "jurisdiction": "https://legal.mistral.ai/terms/privacy-policy",
            "data_retention_days": "https://help.mistral.ai/en/collections/701684-trust",
            "trains_on_inputs": "https://help.mistral.ai/en/articles/323757-do-you-use-my-user-data-to-train-your-artificial-intelligence-models",
        },
        notes="Mistral AI SAS, Paris. API inputs/outputs kept 30 rolling days for abuse monitoring "
        "(ZDR on request). Experiment (free) plan data may be used for training. Hosting region is "
        "left unknown: the help centre says EU by default, but the DPA also lists US infrastructure.",
    ),
    CatalogEntry(
        "deepseek", "DeepSeek API", "openai", "https://api.deepseek.com", "CN", ("CN",), None, None,
        sources={
            "base_url": "https://api-docs.deepseek.com/",
            "jurisdiction": "https://cdn.deepseek.com/policies/en-US/deepseek-privacy-policy.html",
            "regions": "https://cdn.deepseek.com/policies/en-US/deepseek-privacy-policy.html",
        },
        notes="Privacy policy (English, linked from deepseek.com; the policy URL could not be "
        "re-fetched here): information is stored on secure servers in the PRC; controllers are the "
        "Hangzhou and Beijing DeepSeek companies. Retention ('as long as necessary') and training "
        "use of API inputs are not stated for the API specifically: unknown.",
    ),
    CatalogEntry(
        "dashscope-intl", "Alibaba Cloud Model Studio / Qwen (international, Singapore)", "openai",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "SG", None, None, None,
        sources={
            "base_url": _DASHSCOPE_URLS,
            "regions": _DASHSCOPE_REGIONS,
            "jurisdiction": "https://www.alibabacloud.com/help/en/legal/latest/alibaba-cloud-international-website-terms-of-use-alibaba-cloud-international-website-terms-of-use",
        },
        notes="The Singapore region stores data in SG; its 'International' deployment scope runs "
        "inference anywhere outside mainland China, so regions stay unknown. The international "
        "site contracts through Alibaba Cloud (Singapore) Private Limited, except for European "
        "(Alibaba Cloud (Europe) Ltd) and US (Alibaba Cloud US LLC) billing addresses.",
    ),
    CatalogEntry(
        "dashscope-cn", "Alibaba Cloud Model Studio / Qwen (China, Beijing)", "openai",
        "https://dashscope.aliyuncs.com/compatible-mode/v1", "CN", ("CN",), None, None,
        sources={
            "base_url": _DASHSCOPE_URLS,
            "regions": _DASHSCOPE_REGIONS,
            "jurisdiction": "https://terms.aliyun.com/legal-agreement/terms/suit_bu1_ali_cloud/suit_bu1_ali_cloud201902141711_54837.html",
        },
        notes="Operated by Alibaba Cloud Computing Ltd. (Hangzhou). The Chinese Mainland deployment "
        "scope keeps inference in mainland China.",
    ),
    CatalogEntry(
        "moonshot", "Moonshot AI Kimi API (China)", "openai", "https://api.moonshot.cn/v1", "CN",
        None, None, None,
        sources={
            "base_url": "https://platform.kimi.com/docs/api/overview",
            "jurisdiction": "https://platform.kimi.com/docs/api/overview",
        },
        notes="Beijing Moonshot AI operates the China platform (platform.kimi.com / api.moonshot.cn); "
        "the global endpoint is https://api.moonshot.ai/v1 (its operator is not stated on the API "
        "pages). Regions, retention and training use are not documented for the API: unknown.",
    ),
    CatalogEntry(
        "zhipu", "Zhipu AI BigModel open platform", "openai", "https://open.bigmodel.cn/api/paas/v4", "CN",
        ("CN",), None, None,
        sources={
            "base_url": "https://docs.bigmodel.cn/",
            "jurisdiction": "https://docs.bigmodel.cn/cn/terms/user-agreement",
            "regions": "https://docs.bigmodel.cn/cn/terms/privacy-policy",
        },
        notes="Beijing Zhipu Huazhang Technology; the privacy policy keeps personal information "
        "collected in China in China. Retention ('shortest period necessary') and training use "
        "(allowed for anonymized data) are not stated as API defaults: unknown.",
    ),
    CatalogEntry(
        "qianfan", "Baidu AI Cloud Qianfan ModelBuilder", "openai", "https://qianfan.baidubce.com/v2", "CN",
        ("CN",), None, None,
        sources={
            "base_url": "https://cloud.baidu.com/doc/WENXINWORKSHOP/s/Zm2ycv77m",
            "jurisdiction": "https://intl.cloud.baidu.com/doc/Agreements/s/ek77inppz-en",
            "regions": "https://intl.cloud.baidu.com/doc/Agreements/s/ek77inppz-en",
        },
        notes="Baidu AI Cloud stores personal information in the PRC. Retention and training use "
        "of API content are not documented: unknown.",
    ),
    CatalogEntry(
        "vllm", "vLLM OpenAI-compatible server (self-hosted)", "openai", "http://localhost:8000/v1",
        None, None, None, None, tags=("self-hosted",),
        sources={"base_url": "https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html"},
        notes="No fixed facts: jurisdiction, regions and retention come from the operator.",
    ),
    CatalogEntry(
        "ollama", "Ollama (self-hosted)", "openai", "http://localhost:11434/v1",
        None, None, None, None, tags=("self-hosted",),
        sources={"base_url": "https://docs.ollama.com/api/openai-compatibility"},
        notes="No fixed facts: jurisdiction, regions and retention come from the operator.",
    ),
    CatalogEntry(
        "llamacpp", "llama.cpp llama-server (self-hosted)", "openai", "http://localhost:8080/v1",
        None, None, None, None, tags=("self-hosted",),
        sources={"base_url": "https://github.com/ggml-org/llama.cpp/tree/master/tools/server"},
        notes="No fixed facts: jurisdiction, regions and retention come from the operator.",
    ),
)  # fmt: skip

CATALOG: Mapping[str, CatalogEntry] = MappingProxyType({e.name: e for e in _ENTRIES})


def catalog_entry(name: str) -> CatalogEntry:
    """Look up an entry; ``ValueError`` names the known entries."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ValueError(f"unknown catalog entry {name!r} (known: {', '.join(CATALOG)})") from None


def merge_catalog(entry: CatalogEntry, overrides: Mapping[str, Any]) -> CatalogEntry:
    """Return ``entry`` with every key of ``overrides`` replacing the catalog value (user wins).

    ``overrides`` holds only the fields the user set (an explicit ``None`` means "unknown" and
    wins too). ``tags`` replace, they do not extend. Unknown keys raise ``ValueError``.
    """
    bad = set(overrides) - set(_OVERRIDABLE)
    if bad:
        raise ValueError(f"cannot override {', '.join(sorted(bad))} (overridable: {', '.join(_OVERRIDABLE)})")
    changes: dict[str, Any] = dict(overrides)
    if "regions" in changes:
        changes["regions"] = tuple(changes["regions"]) if changes["regions"] else None
    if "tags" in changes:
        changes["tags"] = tuple(changes["tags"] or ())
    if "jurisdiction" in changes and changes["jurisdiction"] is not None:
        changes["jurisdiction"] = str(changes["jurisdiction"]).upper()
    return replace(entry, **changes)


def provider_facts(provider: Any) -> Facts:
    """Policy facts of one configured provider (a pydantic model with the ``ProviderFacts`` fields).

    Without ``catalog`` the config alone speaks. With it, the catalog entry fills every fact the
    config did not set explicitly (pydantic ``model_fields_set``); an explicit ``null`` stays
    unknown. Raises ``ValueError`` for an unknown catalog name.
    """
    explicit: set[str] = set(getattr(provider, "model_fields_set", set()))
    own = {k: getattr(provider, k, None) for k in _FACT_FIELDS if k in explicit}
    name = getattr(provider, "catalog", None)
    if name is None:
        base = CatalogEntry("", "", "openai", None, None, None, None, None)
    else:
        base = catalog_entry(name)
    return merge_catalog(base, own).facts()
