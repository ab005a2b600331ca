"""The ``deploy/`` examples stay true: the shared config passes ``relaygate check-config`` (run for
real), and nginx's upstream names exactly the replicas the compose file starts, on the port the
config serves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from relaygate.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_deploy_config_passes_check_config() -> None:
    env = {**os.environ, "RELAYGATE_REDIS_URL": "redis://redis:6379/0", "ACME_GATEWAY_KEY": "rg-example"}
    script = str(Path(sys.executable).with_name("relaygate"))
    config = str(DEPLOY / "relaygate.yaml")
    out = subprocess.run(
        [script, "check-config", "--config", config], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok:" in out.stdout + out.stderr
    cfg = load_config(str(DEPLOY / "relaygate.yaml"))
    assert cfg.state.backend == "redis" and cfg.state.redis_url_env == "RELAYGATE_REDIS_URL"
    assert cfg.storage.url is None  # every replica takes $RELAYGATE_DB_URL: one shared database


def test_nginx_upstream_matches_the_compose_replicas() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    replicas = sorted(name for name in compose["services"] if name.startswith("relaygate-"))
    assert len(replicas) >= 2
    nginx = (DEPLOY / "nginx.conf").read_text()
    upstream = re.search(r"upstream relaygate \{(.*?)\}", nginx, re.S)
    assert upstream is not None
    servers = sorted(re.findall(r"server ([\w.-]+):(\d+)", upstream.group(1)))
    port = str(load_config(str(DEPLOY / "relaygate.yaml")).server.port)
    assert servers == [(name, port) for name in replicas]
    env = compose["services"][replicas[0]]["environment"]
    assert {"RELAYGATE_DB_URL", "RELAYGATE_REDIS_URL"} <= set(env)
    assert "non_idempotent" not in nginx  # a POST already sent is never resent to another replica
