"""Host TensorZero's gateway as an HTTP server from its PyPI wheel (no Docker, no Rust build).

    PEER_VENV/bin/python bench/peers/tensorzero_host.py tensorzero.toml

The `tensorzero` wheel bundles the Rust gateway (tensorzero-core, axum on tokio) for its
embedded mode; `tensorzero._start_http_gateway` (the internal helper behind the deprecated
`patch_openai_client`) serves it over HTTP on 127.0.0.1 with an ephemeral port. This script
starts it, prints `BASE_URL <url>` and then sleeps: Python holds no lock and sits on no request
path, every request is handled by the gateway's own tokio threads. It is the same gateway code
as the standalone binary, but not the Docker image's build, which this machine cannot run.
"""

import signal
import sys

import tensorzero


def main() -> None:
    gateway = tensorzero._start_http_gateway(
        config_file=sys.argv[1],
        clickhouse_url=None,
        postgres_url=None,
        valkey_url=None,
        async_setup=False,
    )
    print(f"BASE_URL {gateway.base_url}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
