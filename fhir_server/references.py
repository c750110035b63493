"""Walking the references of a resource (`Reference.reference` wherever it sits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def walk_references(node: Any, visit: Callable[[str], str | None]) -> None:
    """Call `visit` on every `reference` string; a non-None result replaces it in place."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            new = visit(ref)
            if new is not None:
                node["reference"] = new
        for value in node.values():
            if isinstance(value, dict | list):
                walk_references(value, visit)
    elif isinstance(node, list):
        for value in node:
            walk_references(value, visit)


def relative_references(resource: Any) -> set[str]:
    """Every literal relative reference (`Type/id`) in a resource."""
    found: set[str] = set()

    def collect(ref: str) -> None:
        if ref.count("/") == 1 and not ref.startswith(("#", "urn:", "http")):
            found.add(ref)

    walk_references(resource, collect)
    return found
