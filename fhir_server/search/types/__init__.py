"""One module per search-parameter type, each holding both sides of the story for its type:

index(items, param, ctx) -> dict                   the `i.<code>` entry for the selected values
build(field, param, modifier, alternatives, ctx)   the MongoDB filter for one parameter occurrence
                                                   (`alternatives` = comma-separated values, escaped)
MODIFIERS                                          supported modifiers (`:missing` is handled for all)
"""

from __future__ import annotations

from types import ModuleType

from fhir_server.search.types import composite, date, number, quantity, reference, string, token, uri

TYPE_MODULES: dict[str, ModuleType] = {
    "string": string,
    "token": token,
    "reference": reference,
    "date": date,
    "number": number,
    "quantity": quantity,
    "uri": uri,
    "composite": composite,
}
