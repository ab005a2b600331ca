"""Configuration: schema (strict pydantic models) and loading with precise error locations."""

from relaygate.config.load import default_config, load_config, load_config_text
from relaygate.config.schema import Config

__all__ = ["Config", "default_config", "load_config", "load_config_text"]
