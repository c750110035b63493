"""vread: GET [base]/[type]/[id]/_history/[vid]."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import resource_id_of, resource_type_of, server
from fhir_server.errors import FHIRError
from fhir_server.interactions.read import respond_with_version


async def vread(request: Request) -> Response:
    ctx = server(request)
    vid = request.path_params["vid"]
    if not vid.isdigit():
        raise FHIRError(404, f"version {vid!r} is not known", code="not-found")
    version = await ctx.store.vread(resource_type_of(request), resource_id_of(request), int(vid))
    return await respond_with_version(request, ctx, version)
