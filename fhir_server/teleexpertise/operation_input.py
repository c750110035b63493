"""The input of a workflow operation: a FHIR `Parameters` body (or none), and the query string.

Each operation documents its parameters; values are read by name: `valueReference`, `valueString`,
`valueBoolean`, `valueCode`/`valueCoding`, or `resource`. Query parameters of the same name count too
(`$close?side=requis`), so simple operations need no body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from fhir_server.context import server
from fhir_server.errors import FHIRError
from fhir_server.interactions.body import validate_or_raise
from fhir_server.teleexpertise.codes import reference_of


@dataclass
class OperationInput:
    parameters: list[dict[str, Any]]
    query: dict[str, list[str]]

    def _named(self, name: str) -> list[dict[str, Any]]:
        return [p for p in self.parameters if p.get("name") == name]

    def references(self, name: str) -> list[str]:
        out = []
        for p in self._named(name):
            ref = reference_of(p.get("valueReference"))
            if ref is None:
                raise FHIRError(400, f"parameter {name} takes a valueReference (Type/id)", code="invalid")
            out.append(ref)
        for value in self.query.get(name, []):
            out += [v.strip() for v in value.split(",") if v.strip()]
        return out

    def string(self, name: str) -> str | None:
        for p in self._named(name):
            for key in ("valueString", "valueMarkdown", "valueCode"):
                if isinstance(p.get(key), str):
                    return p[key]
            if isinstance(p.get("valueCoding"), dict):
                return p["valueCoding"].get("code")
        values = self.query.get(name)
        return values[0] if values else None

    def boolean(self, name: str, default: bool = False) -> bool:
        for p in self._named(name):
            if isinstance(p.get("valueBoolean"), bool):
                return p["valueBoolean"]
        values = self.query.get(name)
        if values:
            if values[0] not in ("true", "false"):
                raise FHIRError(400, f"parameter {name} is true or false", code="invalid")
            return values[0] == "true"
        return default

    def resource(self, name: str, rtype: str) -> dict[str, Any] | None:
        for p in self._named(name):
            found = p.get("resource")
            if not isinstance(found, dict) or found.get("resourceType") != rtype:
                raise FHIRError(400, f"parameter {name} takes a {rtype} resource", code="invalid")
            return found
        return None


async def operation_input(request: Request) -> OperationInput:
    query: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, []).append(value)
    limit = server(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FHIRError(413, "request body too large", code="too-costly")
    raw = await request.body()
    if len(raw) > limit:
        raise FHIRError(413, "request body too large", code="too-costly")
    if not raw.strip():
        return OperationInput([], query)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FHIRError(400, f"the body is not valid JSON: {exc}", code="structure") from None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FHIRError(400, "an operation's body is a Parameters resource", code="invalid")
    validate_or_raise(body, "Parameters", model_check=False)
    return OperationInput(list(body.get("parameter") or []), query)
