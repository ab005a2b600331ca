"""A request's data class: from the ``x-relaygate-data-class`` header, the tenant, the policy default, or PII.

Classes, least to most sensitive: ``public < internal < personal < restricted``.

Precedence (pure function, no I/O):

1. The *declared* class is the header if present (validated), else the tenant's default, else
   the policy default (``policy.default_data_class``, ``internal`` unless configured).
2. Detected PII raises the class to at least ``personal``; it never lowers a declared class
   (``restricted`` stays ``restricted``). Detection can only make routing stricter, because a
   detector miss must not be what decides that personal data may leave a region, and a false
   positive costs only a narrower candidate set.

The header is trusted to *lower* the class below the tenant default: the caller is the
authenticated tenant declaring its own data. Operators who need a floor can express it as a
policy rule matching on ``tenant``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal, cast

from relaygate.config.policy_schema import DATA_CLASSES, DataClass
from relaygate.errors import InvalidRequestError

__all__ = [
    "DATA_CLASS_HEADER",
    "DataClassSource",
    "effective_data_class",
    "parse_data_class",
    "rank",
]

DATA_CLASS_HEADER = "x-relaygate-data-class"
DataClassSource = Literal["header", "tenant", "policy", "pii"]
_PII_FLOOR: DataClass = "personal"


def rank(data_class: DataClass) -> int:
    """0 for ``public`` ... 3 for ``restricted``."""
    return DATA_CLASSES.index(data_class)


def parse_data_class(value: str) -> DataClass:
    """Validate a header value (case-insensitive, surrounding blanks ignored).

    Raises ``InvalidRequestError`` (400, ``param=x-relaygate-data-class``, code
    ``invalid_data_class``) naming the header and the accepted values.
    """
    norm = value.strip().lower()
    if norm not in DATA_CLASSES:
        shown = value if len(value) <= 40 else value[:40] + "..."
        accepted = ", ".join(DATA_CLASSES)
        raise InvalidRequestError(
            f"header {DATA_CLASS_HEADER}: {shown!r} is not a data class; use one of {accepted}",
            param=DATA_CLASS_HEADER,
            code="invalid_data_class",
        )
    return cast(DataClass, norm)


def effective_data_class(
    header: str | None,
    tenant_default: DataClass | None,
    policy_default: DataClass,
    detected_entities: Collection[str] = (),
) -> tuple[DataClass, DataClassSource]:
    """Return ``(data_class, source)`` for one request.

    ``header``: raw ``x-relaygate-data-class`` value or ``None`` when absent.
    ``detected_entities``: PII entity types found in the prompt (``relaygate.policy.pii``).
    ``source`` is where the final class came from: ``header``, ``tenant``, ``policy`` or ``pii``
    (``pii`` only when detection raised it).
    """
    declared: DataClass
    source: DataClassSource
    if header is not None:
        declared, source = parse_data_class(header), "header"
    elif tenant_default is not None:
        declared, source = tenant_default, "tenant"
    else:
        declared, source = policy_default, "policy"
    if detected_entities and rank(declared) < rank(_PII_FLOOR):
        return _PII_FLOOR, "pii"
    return declared, source
