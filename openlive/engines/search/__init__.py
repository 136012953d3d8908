"""Search providers behind the `googleSearch` tool, and the grounding metadata of replies."""

from .base import SearchError, SearchProvider, SearchResult, grounding_metadata
from .http import HttpSearch
from .local import LocalSearch, fts5_available

__all__ = ["HttpSearch", "LocalSearch", "SearchError", "SearchProvider", "SearchResult",
           "fts5_available", "grounding_metadata"]
