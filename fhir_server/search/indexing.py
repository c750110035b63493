"""The `i` document stored with each current version: search values plus sort keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.search.extract import extract_index
from fhir_server.search.registry import Registry
from fhir_server.search.sorting import add_sort_keys


def index_function(registry: Registry, base_url: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def index(resource: dict[str, Any]) -> dict[str, Any]:
        return add_sort_keys(extract_index(resource, registry, base_url))

    return index
