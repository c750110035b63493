"""QIDO-RS (PS3.18 10.6): search for studies, series and instances; application/dicom+json.

Resource paths: /studies, /studies/{study}/series, /studies/{study}/instances,
/studies/{study}/series/{series}/instances, /series, /instances. Query parameters: matching keys
by keyword or tag (matching.py), `includefield` (repeated or comma-separated, or `all`), `limit`,
`offset`, `fuzzymatching` (only `false` is honoured: fuzzy matching is not offered). More results than
`limit` (default and maximum: FHIR_MAX_COUNT) are announced by a Warning header, as PS3.18 asks.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomweb import dicom_json as dj
from dicomweb import web_audit
from dicomweb.matching import QueryError
from dicomweb.security import visible_studies
from dicomweb.wado import DICOM_JSON, _json_ok, store_of, uid_param
from fhir_server.errors import FHIRError

CONTROL = {"includefield", "limit", "offset", "fuzzymatching"}


def _int(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FHIRError(400, f"{name} must be a non-negative integer", code="invalid") from None
    if value < 0:
        raise FHIRError(400, f"{name} must be a non-negative integer", code="invalid")
    return value


async def _search(request: Request, level: str) -> Response:
    _json_ok(request)
    store = store_of(request)
    study, series = uid_param(request, "study"), uid_param(request, "series")
    match: dict[str, str] = {}
    include: list[str] = []
    for key, value in request.query_params.multi_items():
        if key == "includefield":
            include.append(value)
        elif key in CONTROL or key.startswith("_"):
            continue
        elif "." in key:
            raise FHIRError(400, f"sequence matching ({key}) is not supported", code="not-supported")
        elif key in match:
            raise FHIRError(400, f"{key} is given twice: use one value, or a \\-separated list", code="invalid")
        else:
            match[key] = value
    max_count = request.app.state.server.settings.max_count
    limit = min(_int(request, "limit", max_count) or 0, max_count)
    offset = _int(request, "offset", 0) or 0
    try:
        found = await store.search(
            level,  # type: ignore[arg-type]
            match,
            study_uid=study,
            series_uid=series,
            limit=limit + 1,
            offset=offset,
            includefields=include,
            within_studies=await visible_studies(request),
        )
    except QueryError as exc:
        raise FHIRError(400, str(exc), code="invalid") from None
    headers = {}
    ignored = store.ignored_keys(level, match)  # type: ignore[arg-type]
    if ignored:
        headers["Warning"] = f'299 {request.url.netloc}: "matching on {", ".join(ignored)} is not supported: ignored"'
    if len(found) > limit:
        found = found[:limit]
        more = f'299 {request.url.netloc}: "There are additional results that can be requested"'
        headers["Warning"] = f"{headers['Warning']}, {more}" if "Warning" in headers else more
    studies = list(dict.fromkeys(dj.text(item, dj.T["StudyInstanceUID"]) for item in found))
    patients = list(dict.fromkeys(p for p in (dj.text(item, dj.T["PatientID"]) for item in found) if p))
    if study and not studies:
        studies = [study]
    await web_audit.record(request, "accessed", studies=studies[:100], patients=patients[:100])
    return Response(orjson.dumps(found), media_type=DICOM_JSON, headers=headers)


async def search_studies(request: Request) -> Response:
    return await _search(request, "STUDY")


async def search_series(request: Request) -> Response:
    return await _search(request, "SERIES")


async def search_instances(request: Request) -> Response:
    return await _search(request, "IMAGE")
