"""Site configuration: YAML with line marks, validated by pydantic, errors as file:line:column."""

from gateway.config.errors import ConfigError
from gateway.config.loader import load_site, load_site_text
from gateway.config.site import SiteConfig

__all__ = ["ConfigError", "SiteConfig", "load_site", "load_site_text"]
