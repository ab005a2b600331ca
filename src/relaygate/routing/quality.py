"""Merge published eval quality (the ``deployment_quality`` table) into a config (pure).

``relaygate eval publish`` stores one ``QualityScore`` per (route, deployment, suite). The gateway
reads them when it builds its runtime (start-up, and every reload: ``SIGHUP`` or ``POST
/admin/reload``) and overlays them on the ``quality:`` written in the config file: for the same
suite, the database wins (it is the newer evidence). Records for routes or deployments no longer in
the config are ignored. The ``cheapest_non_inferior`` strategy reads the merged config.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from relaygate.config.quality_schema import PublishedQuality, QualityScore
from relaygate.config.schema import Config

__all__ = ["PublishedQuality", "QualitySource", "read_quality", "with_quality"]

log = logging.getLogger("relaygate")


class QualitySource(Protocol):
    """Where published quality is read from (``relaygate.ledger.quality_store.QualityStore``)."""

    def all(self, route: str | None = None) -> list[PublishedQuality]: ...


def read_quality(source: QualitySource | None) -> list[PublishedQuality]:
    """Every published record, or none when there is no source or it fails (logged): routing
    then falls back to the config's own ``quality:`` (fail closed for ``cheapest_non_inferior``).
    Blocks: call it in a worker thread from async code."""
    if source is None:
        return []
    try:
        return source.all()
    except Exception:  # a database hiccup must not stop a start or a reload
        log.exception("cannot read published eval quality; using the config's quality only")
        return []


def with_quality(config: Config, published: Iterable[PublishedQuality]) -> Config:
    """``config`` with each record merged into ``routes[route].deployments[...].quality[suite]``.

    Returns ``config`` itself when nothing applies; never validates again (the records are
    already ``QualityScore`` s), so it costs a few copies, not a reload."""
    by_dep: dict[tuple[str, str], dict[str, QualityScore]] = {}
    for p in published:
        by_dep.setdefault((p.route, p.deployment), {})[p.suite] = p.score
    if not by_dep:
        return config
    routes = dict(config.routes)
    changed = False
    for name, route in config.routes.items():
        deps = []
        for dep in route.deployments:
            extra = by_dep.get((name, dep.deployment_id))
            if extra:
                dep = dep.model_copy(update={"quality": {**dep.quality, **extra}})
                changed = True
            deps.append(dep)
        routes[name] = route.model_copy(update={"deployments": deps})
    return config.model_copy(update={"routes": routes}) if changed else config
