"""relaygate: a self-hosted LLM gateway that makes a model provider replaceable at any moment."""

from relaygate import errors
from relaygate.config import Config, default_config, load_config

__version__ = "0.1.0"

__all__ = ["Config", "__version__", "create_app", "default_config", "errors", "load_config"]


def __getattr__(name: str) -> object:
    if name == "create_app":  # lazy: importing the package does not pull in the web stack
        from relaygate.app import create_app

        return create_app
    raise AttributeError(name)
