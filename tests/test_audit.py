"""The audit trail: every interaction, refusal and failed authentication leaves an immutable AuditEvent."""

from __future__ import annotations

import base64

import httpx

from tests.helpers import FHIR_JSON, outcome_of, patient, post

REST = "http://hl7.org/fhir/restful-interaction"


async def events(client: httpx.AsyncClient, **params: str) -> list[dict]:
    r = await client.get("AuditEvent", params={"_count": "200", "_sort": "-_lastUpdated", **params})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]


async def test_interactions_are_audited(client: httpx.AsyncClient) -> None:
    pid = (await post(client, patient())).json()["id"]
    await client.get(f"Patient/{pid}")
    await client.get("Patient", params={"family": "martin"})
    await client.delete(f"Patient/{pid}")
    about = await events(client, entity=f"Patient/{pid}")
    codes = [e["subtype"][0]["code"] for e in about]
    assert codes == ["delete", "read", "create"]
    read = about[1]
    assert read["action"] == "R" and read["outcome"] == "0"
    assert read["agent"][0]["who"]["identifier"]["value"] and read["agent"][0]["altId"]
    assert read["agent"][0]["network"]["address"]
    assert read["source"]["observer"]["display"] == "fhir-server"
    searches = [e for e in await events(client, subtype=f"{REST}|search-type")]
    queries = [base64.b64decode(e["entity"][0]["query"]).decode() for e in searches if e.get("entity")]
    assert "family=martin" in queries


async def test_refusals_and_failed_logins_are_audited(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, settings
) -> None:
    from tests.conftest import token_for

    before = len(await events(client, outcome="4"))
    assert (await anon_client.get("Patient")).status_code == 401
    narrow = {"Authorization": f"Bearer {token_for(settings, 'system/Observation.rs')}"}
    assert (await anon_client.get("Patient", headers=narrow)).status_code == 403
    assert (await client.post("Patient", content=b"{", headers={"Content-Type": FHIR_JSON})).status_code == 400
    failures = await events(client, outcome="4")
    assert len(failures) >= before + 3
    assert any(e["agent"][0]["who"].get("display") == "unauthenticated" for e in failures)


async def test_audit_events_are_immutable(client: httpx.AsyncClient) -> None:
    event = (await events(client))[0]
    changed = dict(event, outcomeDesc="nothing to see")
    r = await client.put(f"AuditEvent/{event['id']}", json=changed, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 405
    outcome_of(r)
    assert (await client.delete(f"AuditEvent/{event['id']}")).status_code == 405
    r = await client.patch(
        f"AuditEvent/{event['id']}",
        json=[{"op": "remove", "path": "/outcomeDesc"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 405
    assert (await client.delete("AuditEvent", params={"_id": event["id"]})).status_code == 405
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"AuditEvent/{event['id']}"}}],
    }
    assert (await client.post("", json=bundle)).status_code == 405
    assert (await client.get(f"AuditEvent/{event['id']}")).json()["outcomeDesc"] == event["outcomeDesc"]


async def test_retention_purge_keeps_recent_events(client: httpx.AsyncClient, app) -> None:
    from datetime import timedelta

    from fhir_server import audit
    from fhir_server.storage.clock import now_ms

    ctx = app.state.server
    recent = len(await events(client))
    old = (
        await post(
            client,
            {
                "resourceType": "AuditEvent",
                "type": {"code": "rest"},
                "recorded": "2020-01-01T00:00:00Z",
                "agent": [{"requestor": True}],
                "source": {"observer": {"display": "x"}},
            },
        )
    ).json()
    # Age it as if written 2 years ago.
    two_years = now_ms() - timedelta(days=730)
    await ctx.database.resources("AuditEvent").update_one({"_id": old["id"]}, {"$set": {"lu": two_years}})
    await ctx.database.history.update_one({"_id": f"AuditEvent/{old['id']}/1"}, {"$set": {"lu": two_years}})
    assert await audit.purge_expired(ctx) == 1
    assert (await client.get(f"AuditEvent/{old['id']}")).status_code == 404
    assert len(await events(client)) >= recent
