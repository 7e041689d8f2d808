"""llm-api-router: one endpoint per API family, many providers behind it, automatic fallback."""

from llm_api_router._version import __version__
from llm_api_router.config import RouterConfig
from llm_api_router.server import create_app

__all__ = ["RouterConfig", "__version__", "create_app"]
