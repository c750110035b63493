"""The audit trail per administrator (spec §8 test 13, last line): "a local admin's `AuditEvent?` search
returns only their structure; a regional admin's returns all" — with the users of the téléexpertise world.

a1 (communauté A of S2) and d1 (communauté D of S3) each create a Patient (a generic REST event) and take
a dossier in charge (a workflow transition event). adm2 (local administrator of S2) finds a1's events and
not d1's, adm3 the reverse, reg (regional) both; a professional or a bureau des entrées finds none; reads
follow the same rule (404); a system token sees everything.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request

from fhir_server import audit
from tests.test_teleexpertise_world import OPERATION, World, build_world


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings: Any) -> World:
    return await build_world(anon_client, dict(client.headers), settings)


async def all_events(world: World, user: str, **params: Any) -> list[dict[str, Any]]:
    """Every AuditEvent a user's search returns, following the paging links."""
    found: list[dict[str, Any]] = []
    r = await world.get(user, "AuditEvent", _count=200, **params)
    while True:
        assert r.status_code == 200, r.text
        bundle = r.json()
        found += [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
        following = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        if following is None:
            return found
        r = await world.client.get(following, headers=world.h(user))


def agents(event: dict[str, Any]) -> set[str]:
    return {a["who"]["reference"] for a in event.get("agent", []) if "reference" in a.get("who", {})}


@pytest.fixture(scope="module")
async def activity(world: World, client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """One generic event and one transition event by a1 (S2) and by d1 (S3), as a system token sees them."""
    out: dict[str, dict[str, Any]] = {}
    for user in ("a1", "d1"):
        pid = await world.patient(user, family=f"Audit{user}")
        r = await client.get("AuditEvent", params={"entity": f"Patient/{pid}", "subtype": "create"})
        (entry,) = r.json()["entry"]
        out[f"{user}-create"] = entry["resource"]
    _, tasks = await world.sent_dossier(world.orgs["A"], world.orgs["D"])
    for user, org in (("a1", "A"), ("d1", "D")):
        task_id = tasks[world.orgs[org]]
        assert (await world.op(user, f"Task/{task_id}/$accept")).status_code == 200
        r = await client.get("AuditEvent", params={"entity": f"Task/{task_id}", "subtype": f"{OPERATION}|accept"})
        (entry,) = r.json()["entry"]
        out[f"{user}-accept"] = entry["resource"]
    return out


async def test_events_name_the_acting_structure(world: World, activity: dict[str, dict[str, Any]]) -> None:
    assert world.orgs["S2"] in agents(activity["a1-create"])
    assert world.orgs["S3"] in agents(activity["d1-create"])
    assert world.orgs["A"] in agents(activity["a1-accept"])
    assert world.orgs["D"] in agents(activity["d1-accept"])


async def test_local_admin_sees_only_their_structure(world: World, activity: dict[str, dict[str, Any]]) -> None:
    for admin, mine, theirs, own_orgs in (
        ("adm2", "a1", "d1", {"S2", "A", "B"}),
        ("adm3", "d1", "a1", {"S3", "D", "Z"}),
    ):
        seen = await all_events(world, admin)
        ids = {e["id"] for e in seen}
        assert {activity[f"{mine}-create"]["id"], activity[f"{mine}-accept"]["id"]} <= ids, admin
        assert not {activity[f"{theirs}-create"]["id"], activity[f"{theirs}-accept"]["id"]} & ids, admin
        allowed = {world.orgs[o] for o in own_orgs}
        assert all(agents(e) & allowed for e in seen), admin  # nothing else slips through
        # Reads follow the same rule; a narrowed search cannot reach the other structure either.
        other = activity[f"{theirs}-create"]
        assert (await world.get(admin, f"AuditEvent/{activity[f'{mine}-create']['id']}")).status_code == 200
        assert (await world.get(admin, f"AuditEvent/{other['id']}")).status_code == 404
        entity = other["entity"][0]["what"]["reference"]
        assert await world.search_ids(admin, "AuditEvent", entity=entity) == []


async def test_regional_admin_sees_all(
    world: World, activity: dict[str, dict[str, Any]], client: httpx.AsyncClient
) -> None:
    total = (await client.get("AuditEvent", params={"_summary": "count"})).json()["total"]
    ids = {e["id"] for e in await all_events(world, "reg")}
    assert {e["id"] for e in activity.values()} <= ids
    assert len(ids) > total  # the events of everybody: what a system token counted, and that count's own event
    assert (await world.get("reg", f"AuditEvent/{activity['d1-create']['id']}")).status_code == 200


@pytest.mark.parametrize("user", ["a1", "d1", "be2", "req"])
async def test_other_users_see_no_audit_event(world: World, activity: dict[str, dict[str, Any]], user: str) -> None:
    assert await all_events(world, user) == []
    own = activity.get(f"{user}-create", activity["a1-create"])  # even the events of their own acts
    assert (await world.get(user, f"AuditEvent/{own['id']}")).status_code == 404


async def test_system_tokens_keep_their_scope(client: httpx.AsyncClient, activity: dict[str, dict[str, Any]]) -> None:
    for event in activity.values():
        assert (await client.get(f"AuditEvent/{event['id']}")).status_code == 200


async def test_a_login_names_the_structure_of_who_logs_in(world: World, app: Any) -> None:
    """A professional's login event (what auth/local_login.py and auth/oauth.py record) names their structure,
    so their local administrator finds it; the other structure's administrator does not."""
    request = Request(
        {"type": "http", "method": "POST", "path": "/oauth/token", "headers": [], "client": ("10.0.0.7", 1)}
    )
    await audit.record_login(
        app.state.server, request, client_id="app", mode="otp", success=True, user=world.people["a1"]
    )
    logins = [e for e in await all_events(world, "adm2", subtype="110122") if world.people["a1"] in agents(e)]
    assert len(logins) == 1 and world.orgs["S2"] in agents(logins[0])
    assert logins[0]["outcomeDesc"] == "otp: success"
    assert await all_events(world, "adm3", subtype="110122") == []
