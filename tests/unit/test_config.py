"""relaygate.yaml schema + loader: valid configs load, invalid ones fail with ONE line
``file:line: field.path: reason`` that points at the offending YAML line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from relaygate.config.load import default_config, load_config, load_config_text
from relaygate.config.schema import (
    Config,
    LocalProvider,
    OpenAIProvider,
    Price,
    RetryConfig,
    TenantKey,
)
from relaygate.errors import ConfigError

FILE = "relaygate.yaml"
SHA = "0123456789abcdef" * 4

# A README-style config: two OpenAI-protocol providers, the local model, priority and
# weighted routes, prices, tenants with keys and allowed routes.
VALID = (
    """\
providers:
  openai:
    protocol: openai
    base_url: https://api.openai.com/v1/
    api_key_env: OPENAI_API_KEY
    jurisdiction: US
    timeouts:
      connect_ms: 2000
      first_byte_ms: 30000
  deepseek:
    protocol: openai
    base_url: https://api.deepseek.com
    api_key_env: DEEPSEEK_API_KEY
    regions: [cn]
    stream_usage: false
  local:
    protocol: local
    threads: 2

routes:
  chat:
    strategy: priority
    deployments:
      - provider: openai
        model: gpt-4o-mini
        price: {input: 0.15, output: 0.60, cached_input: 0.075}
        context_window: 128000
      - provider: deepseek
        model: deepseek-chat
        price: {input: 0.27, output: 1.10}
      - provider: local
        model: smollm2-135m
  mix:
    strategy: weighted
    retry: {max_attempts: 3, backoff_base_ms: 50}
    deployments:
      - {provider: openai, model: gpt-4o-mini, weight: 3}
      - {provider: deepseek, model: deepseek-chat, weight: 1}
      - {provider: openai, model: gpt-4o-mini, id: openai-mini-b, weight: 1}

tenants:
  acme:
    region: eu
    keys:
      - key_env: ACME_KEY
      - key_sha256: "SHA"
    allowed_routes: [chat]
  everyone: {}

auth:
  mode: keys
server:
  port: 8080
retry:
  max_attempts: 2
breaker:
  failure_threshold: 3
  cooldown_s: 10
"""
).replace("SHA", SHA)


def _err(text: str, filename: str = FILE) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load_config_text(textwrap.dedent(text), filename)
    return ei.value


def _check_one_line(e: ConfigError, filename: str = FILE) -> None:
    s = str(e)
    assert "\n" not in s and "\r" not in s, s
    assert s.startswith(f"{filename}:"), s


# --------------------------------------------------------------------------- valid


def test_valid_readme_style_config_loads() -> None:
    cfg = load_config_text(VALID, FILE)
    assert set(cfg.providers) == {"openai", "deepseek", "local"}
    oa = cfg.providers["openai"]
    assert isinstance(oa, OpenAIProvider)
    assert oa.base_url == "https://api.openai.com/v1"  # trailing slash stripped
    assert oa.timeouts.connect_ms == 2000 and oa.timeouts.idle_ms == 30_000
    ds = cfg.providers["deepseek"]
    assert isinstance(ds, OpenAIProvider) and ds.stream_usage is False and ds.regions == ["cn"]
    loc = cfg.providers["local"]
    assert isinstance(loc, LocalProvider) and loc.threads == 2

    chat = cfg.routes["chat"]
    assert chat.strategy == "priority" and chat.retry is None
    assert [d.deployment_id for d in chat.deployments] == [
        "openai/gpt-4o-mini",
        "deepseek/deepseek-chat",
        "local/smollm2-135m",
    ]
    assert chat.deployments[0].price == Price(input=0.15, output=0.60, cached_input=0.075)
    assert chat.deployments[0].context_window == 128000
    assert chat.deployments[1].price.cached_input is None
    assert chat.deployments[2].price == Price()  # default: free

    mix = cfg.routes["mix"]
    assert mix.strategy == "weighted"
    assert [d.weight for d in mix.deployments] == [3.0, 1.0, 1.0]
    assert mix.deployments[2].deployment_id == "openai-mini-b"
    assert mix.retry == RetryConfig(max_attempts=3, backoff_base_ms=50)

    assert cfg.tenants["acme"].allowed_routes == ["chat"]
    assert cfg.tenants["acme"].keys == [TenantKey(key_env="ACME_KEY"), TenantKey(key_sha256=SHA)]
    assert cfg.tenants["everyone"].allowed_routes is None
    assert cfg.auth.mode == "keys"
    assert cfg.server.port == 8080 and cfg.server.host == "127.0.0.1"
    assert cfg.breaker.failure_threshold == 3 and cfg.breaker.cooldown_s == 10.0


ROOT = Path(__file__).resolve().parents[2]


def test_shipped_example_loads() -> None:
    path = ROOT / "examples" / "relaygate.yaml"
    if not path.exists():
        pytest.skip("examples/relaygate.yaml not present")
    cfg = load_config(path)
    assert [d.provider for d in cfg.routes["chat"].deployments] == ["openai", "deepseek", "local"]
    assert cfg.tenants["acme"].allowed_routes == ["chat"]


def test_readme_yaml_examples_load() -> None:
    path = ROOT / "README.md"
    if not path.exists():
        pytest.skip("README.md not present")
    blocks = re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    configs = [b for b in blocks if re.search(r"^(providers|routes):", b, re.M)]
    if not configs:
        pytest.skip("README.md has no yaml config example")
    for text in configs:
        cfg = load_config_text(text, "README.md")
        assert cfg.routes


def test_config_is_frozen() -> None:
    cfg = load_config_text(VALID, FILE)
    with pytest.raises(ValidationError):
        cfg.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_file_is_all_defaults(text: str) -> None:
    cfg = load_config_text(text, FILE)
    assert cfg == Config()
    assert cfg.providers == {} and cfg.routes == {} and cfg.auth.mode == "keys"


def test_default_config() -> None:
    cfg = default_config()
    assert set(cfg.routes) == {"local", "smollm2-135m"}
    assert cfg.auth.mode == "open"
    assert isinstance(cfg.providers["local"], LocalProvider)
    for route in cfg.routes.values():
        assert [(d.provider, d.model) for d in route.deployments] == [("local", "smollm2-135m")]
    assert cfg.server.host == "127.0.0.1"


def test_load_config_from_file(tmp_path) -> None:
    p = tmp_path / "rg.yaml"
    p.write_text(VALID, encoding="utf-8")
    assert load_config(p) == load_config_text(VALID, FILE)


def test_load_config_missing_file(tmp_path) -> None:
    p = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    _check_one_line(ei.value, str(p))
    assert ei.value.field == "<file>"


def test_load_config_error_names_the_real_path(tmp_path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("server:\n  prot: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value).startswith(f"{p}:2: server.prot: ")


# --------------------------------------------------------------------------- errors

LOCAL = """\
providers:
  local: {protocol: local}
"""

# (yaml, line, field, reason substring)
ERRORS = [
    pytest.param("server: {}\nsever: {port: 1}\n", 2, "sever", "unknown field", id="typo-top-level"),
    pytest.param("server:\n  host: x\n  prot: 1\n", 3, "server.prot", "unknown field", id="typo-depth-2"),
    pytest.param(
        LOCAL + "routes:\n  chat:\n    deployments: [{provider: local, model: m}]\n    stratgy: weighted\n",
        6,
        "routes.chat.stratgy",
        "unknown field",
        id="typo-route-key",
    ),
    pytest.param(
        LOCAL
        + "routes:\n  chat:\n    deployments:\n      - provider: local\n        model: m\n"
        + "        price:\n          input: 1\n          ouput: 2\n",
        10,
        "routes.chat.deployments.0.price.ouput",
        "unknown field",
        id="typo-depth-5-price",
    ),
    pytest.param(
        "tenants:\n  acme:\n    keys:\n      - key_env: A\n        kye_sha256: b\n",
        5,
        "tenants.acme.keys.0.kye_sha256",
        "unknown field",
        id="typo-in-tenant-key",
    ),
    pytest.param(
        "retry:\n  max_attempts: many\n", 2, "retry.max_attempts", "valid integer", id="wrong-type-int"
    ),
    pytest.param("server:\n  port: [1]\n", 2, "server.port", "valid integer", id="wrong-type-list-for-int"),
    pytest.param("server:\n  port: 70000\n", 2, "server.port", "65535", id="out-of-range"),
    pytest.param("auth:\n  mode: closed\n", 2, "auth.mode", "'keys' or 'open'", id="bad-literal"),
    pytest.param("providers: [a, b]\n", 1, "providers", "valid dictionary", id="providers-not-mapping"),
    pytest.param(
        LOCAL + "routes:\n  chat:\n    deployments:\n      - provider: local\n        model: m\n"
        "        price:\n          input: cheap\n",
        9,
        "routes.chat.deployments.0.price.input",
        "valid number",
        id="wrong-type-price",
    ),
    pytest.param(
        LOCAL + "routes:\n  chat:\n    deployments:\n      - provider: local\n        model: m\n"
        "        weight: 0\n",
        8,
        "routes.chat.deployments.0.weight",
        "greater than 0",
        id="weight-zero",
    ),
    pytest.param(
        LOCAL + "routes:\n  chat:\n    deployments: []\n",
        5,
        "routes.chat.deployments",
        "at least 1",
        id="empty-deployments",
    ),
    pytest.param(
        LOCAL + "routes:\n  chat:\n    deployments:\n      - provider: local\n",
        6,
        "routes.chat.deployments.0.model",
        "Field required",
        id="missing-model",
    ),
    pytest.param(
        LOCAL + "routes:\n  chat:\n    deployments:\n      - provider: local\n        model: m\n"
        "        capabilities: [tools, telepathy]\n",
        8,
        "routes.chat.deployments.0.capabilities.1",
        "",
        id="bad-capability",
    ),
    pytest.param(
        "providers:\n  openai:\n    protocol: openai\n    base_url: https://x\n"
        "routes:\n  chat:\n    deployments:\n      - provider: openai\n        model: a\n"
        "      - provider: opnai\n        model: b\n",
        10,
        "routes.chat.deployments.1.provider",
        "unknown provider 'opnai' (known: openai)",
        id="unknown-provider-in-route",
    ),
    pytest.param(
        "routes:\n  chat:\n    deployments:\n      - provider: openai\n        model: a\n",
        4,
        "routes.chat.deployments.0.provider",
        "unknown provider 'openai' (known: none)",
        id="unknown-provider-no-providers",
    ),
    pytest.param(
        LOCAL + "routes:\n  chat:\n    deployments:\n      - provider: local\n        model: a\n"
        "      - provider: local\n        model: b\n      - provider: local\n        model: a\n",
        10,
        "routes.chat.deployments.2",
        "duplicate deployment 'local/a'",
        id="duplicate-deployment-implicit-id",
    ),
    pytest.param(
        LOCAL + "routes:\n  chat:\n    deployments:\n      - {provider: local, model: a, id: x}\n"
        "      - {provider: local, model: b, id: x}\n",
        7,
        "routes.chat.deployments.1",
        "duplicate deployment 'x'",
        id="duplicate-deployment-explicit-id",
    ),
    pytest.param(
        LOCAL + "routes:\n  chat:\n    deployments:\n      - {provider: local, model: a}\n"
        "tenants:\n  acme:\n    region: eu\n    allowed_routes: [chat, caht]\n",
        10,
        "tenants.acme.allowed_routes",
        "unknown route 'caht'",
        id="tenant-unknown-route",
    ),
    pytest.param(
        "tenants:\n  acme:\n    keys:\n      - key_env: A\n        key_sha256: " + SHA + "\n",
        4,
        "tenants.acme.keys.0",
        "exactly one of key_env or key_sha256",
        id="tenant-key-both",
    ),
    pytest.param(
        "tenants:\n  acme:\n    keys:\n      - key_env: A\n      - {}\n",
        5,
        "tenants.acme.keys.1",
        "exactly one of key_env or key_sha256",
        id="tenant-key-neither",
    ),
    pytest.param(
        "tenants:\n  acme:\n    keys:\n      - key_sha256: " + SHA.upper() + "\n",
        4,
        "tenants.acme.keys.0.key_sha256",
        "pattern",
        id="tenant-key-sha-not-lower-hex",
    ),
    pytest.param(
        "providers:\n  bad name: {protocol: local}\n",
        2,
        "providers.bad name",
        "may hold only",
        id="bad-provider-name",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "reason"), ERRORS)
def test_config_errors(text: str, line: int, field: str, reason: str) -> None:
    e = _err(text)
    _check_one_line(e)
    assert (e.file, e.line, e.field) == (FILE, line, field), str(e)
    assert reason in e.reason, str(e)
    assert str(e) == f"{FILE}:{line}: {field}: {e.reason}"


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        pytest.param("sever:\n  port: 1\n", 1, "sever", id="top-level-block-mapping"),
        pytest.param(
            "providers:\n  local: {protocol: local}\nroutes:\n  chat:\n"
            "    deployments: [{provider: local, model: m}]\n    retri:\n      max_attempts: 3\n",
            6,
            "routes.chat.retri",
            id="route-block-mapping",
        ),
    ],
)
def test_unknown_key_with_block_value_points_at_the_key(text: str, line: int, field: str) -> None:
    e = _err(text)
    assert (e.field, e.line) == (field, line), str(e)


def test_multiple_errors_are_counted_on_the_one_line() -> None:
    e = _err("server:\n  prot: 1\n  hots: x\nretry:\n  max_attempts: 0\n")
    _check_one_line(e)
    assert e.field == "server.prot" and e.line == 2
    assert e.reason.endswith("(and 2 more errors)"), str(e)


# Errors inside a provider (a discriminated union by ``protocol``). What is right today:
# one line, the right file and reason. Path and line are checked in the test below.
PROVIDER_ERRORS = [
    pytest.param(
        "providers:\n  openai:\n    protocol: openai\n    base_url: api.openai.com/v1\n",
        4,
        "providers.openai.base_url",
        "must start with http:// or https://",
        id="base-url-without-scheme",
    ),
    pytest.param(
        "providers:\n  openai:\n    protocol: openai\n    base_url: https://x\n    api_key_evn: K\n",
        5,
        "providers.openai.api_key_evn",
        "unknown field",
        id="typo-in-provider",
    ),
    pytest.param(
        "providers:\n  openai:\n    protocol: openai\n    base_url: https://x\n"
        "    timeouts:\n      conect_ms: 5\n",
        6,
        "providers.openai.timeouts.conect_ms",
        "unknown field",
        id="typo-in-provider-timeouts",
    ),
    pytest.param(
        "providers:\n  local:\n    protocol: local\n    threads: lots\n",
        4,
        "providers.local.threads",
        "valid integer",
        id="wrong-type-in-local-provider",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "reason"), PROVIDER_ERRORS)
def test_provider_errors_one_line_with_reason(text: str, line: int, field: str, reason: str) -> None:
    e = _err(text)
    _check_one_line(e)
    assert reason in e.reason, str(e)
    assert e.field.endswith(field.rsplit(".", 1)[1]), str(e)


@pytest.mark.parametrize(("text", "line", "field", "reason"), PROVIDER_ERRORS)
def test_provider_errors_path_and_line(text: str, line: int, field: str, reason: str) -> None:
    e = _err(text)
    assert (e.line, e.field) == (line, field), str(e)


def test_unknown_protocol() -> None:
    e = _err("providers:\n  x:\n    protocol: grpc\n    base_url: https://x\n")
    _check_one_line(e)
    assert e.field == "providers.x"
    assert "'openai', 'local'" in e.reason
    assert e.line in (2, 3)


def test_unknown_provider_line_in_dotted_route_name() -> None:
    e = _err(
        "providers:\n  openai:\n    protocol: openai\n    base_url: https://x\n"
        "routes:\n  gpt-4.1:\n    deployments:\n      - provider: openai\n        model: a\n"
        "      - provider: nope\n        model: b\n"
    )
    assert e.field == "routes.gpt-4.1.deployments.1.provider"
    assert e.line == 10, str(e)


# (yaml, line of the YAML problem)
YAML_ERRORS = [
    pytest.param("providers:\n  openai:\n    protocol: openai\n   base_url: x\n", 4, id="bad-indent"),
    pytest.param("server:\n  port: 1\nroutes: [a, b\ntenants: {}\n", 4, id="unclosed-flow-seq"),
    pytest.param("server:\n\tport: 1\n", 2, id="tab-indent"),
    pytest.param('a: "unterminated\nb: 1\n', 3, id="unterminated-string"),
    pytest.param("a: b: c\n", 1, id="mapping-in-plain-scalar"),
]


@pytest.mark.parametrize(("text", "line"), YAML_ERRORS)
def test_invalid_yaml(text: str, line: int) -> None:
    e = _err(text)
    _check_one_line(e)
    assert e.field == "<yaml>" and e.line == line, str(e)
    assert e.reason.startswith("not valid YAML: "), str(e)


@pytest.mark.parametrize("text", ["- a\n- b\n", "hello\n", "42\n", "[1, 2]\n", "'x'\n"])
def test_root_not_a_mapping(text: str) -> None:
    e = _err(text)
    _check_one_line(e)
    assert str(e) == f"{FILE}:1: <root>: the file must hold a mapping (key: value)"


def test_filename_is_used_verbatim() -> None:
    with pytest.raises(ConfigError) as ei:
        load_config_text("sever: {}\n", "/etc/relaygate/prod.yaml")
    assert str(ei.value).startswith("/etc/relaygate/prod.yaml:1: sever: ")


# --------------------------------------------------------------------------- schema units


@pytest.mark.parametrize(
    ("url", "ok", "stored"),
    [
        ("https://api.openai.com/v1", True, "https://api.openai.com/v1"),
        ("http://127.0.0.1:8000/v1/", True, "http://127.0.0.1:8000/v1"),
        ("https://x.example///", True, "https://x.example"),
        ("api.openai.com/v1", False, None),
        ("ftp://x", False, None),
        ("HTTPS-ish://x", False, None),
        ("", False, None),
    ],
)
def test_base_url_scheme(url: str, ok: bool, stored: str | None) -> None:
    if ok:
        assert OpenAIProvider(protocol="openai", base_url=url).base_url == stored
    else:
        with pytest.raises(ValidationError, match="must start with http:// or https://"):
            OpenAIProvider(protocol="openai", base_url=url)


@pytest.mark.parametrize(
    ("kw", "ok"),
    [
        ({"key_env": "K"}, True),
        ({"key_sha256": SHA}, True),
        ({}, False),
        ({"key_env": "K", "key_sha256": SHA}, False),
        ({"key_sha256": SHA[:-1]}, False),
        ({"key_sha256": SHA + "0"}, False),
        ({"key_sha256": "g" * 64}, False),
    ],
)
def test_tenant_key_exactly_one(kw: dict[str, str], ok: bool) -> None:
    if ok:
        TenantKey(**kw)
    else:
        with pytest.raises(ValidationError):
            TenantKey(**kw)


# --------------------------------------------------------------------------- regions and keys


REGION_ERRORS = [
    pytest.param(
        "providers:\n  openai:\n    protocol: openai\n    base_url: https://x\n    jurisdiction: USA\n",
        5,
        "providers.openai.jurisdiction",
        "did you mean US?",
        id="jurisdiction-alpha-3",
    ),
    pytest.param(
        "providers:\n  openai:\n    protocol: openai\n    base_url: https://x\n    jurisdiction: Narnia\n",
        5,
        "providers.openai.jurisdiction",
        "not an ISO 3166-1 alpha-2 code",
        id="jurisdiction-made-up",
    ),
    pytest.param(
        "providers:\n  openai:\n    protocol: openai\n    base_url: https://x\n"
        "    region_base_urls: {Chna: 'http://egress:8080/v1'}\n",
        5,
        "providers.openai.region_base_urls",
        "'Chna'",
        id="region-base-url-key",
    ),
    pytest.param("tenants:\n  acme:\n    region: XX\n", 3, "tenants.acme.region", "'XX'", id="tenant-xx"),
    pytest.param(
        "policy:\n  rules:\n    - name: r\n      deny: 'true'\n      match: {tenant_region: [EU, Narnia]}\n",
        5,
        "policy.rules.0.match.tenant_region",
        "'Narnia'",
        id="policy-tenant-region",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "reason"), REGION_ERRORS)
def test_every_region_field_takes_only_iso_codes_or_groups(
    text: str, line: int, field: str, reason: str
) -> None:
    """A made-up or mistyped region passes a pattern check and then silently never matches."""
    e = _err(text)
    _check_one_line(e)
    assert (e.line, e.field) == (line, field), str(e)
    assert reason in e.reason and "ISO 3166-1 alpha-2" in e.reason, str(e)


def test_region_fields_are_normalised() -> None:
    cfg = load_config_text(
        "providers:\n  p: {protocol: openai, base_url: 'https://x', jurisdiction: fr,"
        " region_base_urls: {cn: 'http://egress:8080/v1'}}\n"
        "tenants:\n  acme: {region: eea}\n"
        "policy:\n  rules:\n    - {name: r, deny: 'true', match: {tenant_region: [aq, eu]}}\n"
    )
    provider = cfg.providers["p"]
    assert provider.jurisdiction == "FR" and provider.region_base_urls == {"CN": "http://egress:8080/v1"}
    assert cfg.tenants["acme"].region == "EEA"
    assert cfg.policy.rules[0].match.tenant_region == ["AQ", "EU"]


@pytest.mark.parametrize(
    ("text", "line", "field", "reason"),
    [
        pytest.param(
            "tenants:\n  acme:\n    keys: [{key_env: SHARED}]\n  beta:\n    keys:\n      - key_env: SHARED\n",
            6,
            "tenants.beta.keys.0.key_env",
            "key_env 'SHARED' is already used by tenants.acme.keys.0",
            id="key-env-on-two-tenants",
        ),
        pytest.param(
            f"tenants:\n  acme:\n    keys: [{{key_sha256: {SHA}}}]\n"
            f"  beta:\n    keys: [{{key_sha256: {SHA}}}]\n",
            5,
            "tenants.beta.keys.0.key_sha256",
            "already used by tenants.acme.keys.0",
            id="key-sha-on-two-tenants",
        ),
        pytest.param(
            "tenants:\n  acme:\n    keys:\n      - key_env: K\n      - key_env: K\n",
            5,
            "tenants.acme.keys.1.key_env",
            "already used by tenants.acme.keys.0",
            id="key-env-twice-on-one-tenant",
        ),
    ],
)
def test_one_key_on_two_tenants_is_rejected(text: str, line: int, field: str, reason: str) -> None:
    """The tenant of a request (its budget, limits, policy) must not depend on lookup order."""
    e = _err(text)
    _check_one_line(e)
    assert (e.line, e.field) == (line, field), str(e)
    assert reason in e.reason, str(e)
