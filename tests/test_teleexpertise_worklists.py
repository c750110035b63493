"""Worklists: "to answer", "taken", "sent, waiting"…, by type, priority and date, with paging."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from tests.test_teleexpertise_world import DOSSIER_STATUS, DOSSIER_TYPE, World, build_world

KINDS = ["tle-programmee", "tele-avc", "tle-programmee", "greffe-renale", "tle-urgence"]


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings) -> World:
    return await build_world(anon_client, dict(client.headers), settings)


@pytest.fixture(scope="module")
async def sent(world: World) -> list[tuple[str, str]]:
    """Five dossiers from req to A, oldest first: (ServiceRequest id, A's Task id)."""
    out = []
    for kind in KINDS:
        sr_id, tasks = await world.sent_dossier(world.orgs["A"], kind=kind)
        out.append((sr_id, tasks[world.orgs["A"]]))
    return out


async def pages(world: World, user: str, first: httpx.Response) -> list[list[dict]]:
    """Every page of a searchset, following `next` links as a client does."""
    out = []
    response = first
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        out.append([e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"])
        nxt = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        if nxt is None:
            return out
        response = await world.client.get(nxt, headers=world.h(user))


async def test_to_answer_pages_newest_first(world: World, sent: list[tuple[str, str]]) -> None:
    first = await world.get("a2", "Task/$worklist", list="to-answer", _count=2)
    assert first.json()["total"] == 5
    got = await pages(world, "a2", first)
    assert [len(p) for p in got] == [2, 2, 1]
    ids = [t["id"] for page in got for t in page]
    assert ids == [task for _, task in reversed(sent)]  # -authored-on
    # The next links are plain Task searches anyone can read.
    link = next(x["url"] for x in first.json()["link"] if x["relation"] == "next")
    assert "/Task?" in link and "tlx-addressee=" in link
    # The same list as a plain search.
    plain = await world.search_ids(
        "a1", "Task", **{"tlx-addressee": world.orgs["A"], "status": "requested", "_sort": "-authored-on"}
    )
    assert plain == ids


async def test_filters_by_type_priority_and_date(world: World, sent: list[tuple[str, str]]) -> None:
    r = await world.get("a1", "Task/$worklist", list="to-answer", type="tle-programmee")
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {sent[0][1], sent[2][1]}
    r = await world.get("a1", "Task/$worklist", list="to-answer", priority="stat")
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {sent[1][1], sent[4][1]}
    r = await world.get(
        "a1", "Task/$worklist", list="to-answer", type="tle-programmee,greffe-renale", _sort="authored-on"
    )
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [sent[0][1], sent[2][1], sent[3][1]]
    authored = {t: datetime.fromisoformat((await world.get("a1", f"Task/{t}")).json()["authoredOn"]) for _, t in sent}
    third = (await world.get("a1", f"Task/{sent[2][1]}")).json()["authoredOn"]
    r = await world.get("a1", "Task/$worklist", list="to-answer", authored=f"ge{third}")
    # Fractional seconds are searched at second precision (search/types/date.py): Tasks sent within the
    # same second as the third one match too.
    expected = {t for t, when in authored.items() if when >= authored[sent[2][1]].replace(microsecond=0)}
    assert {e["resource"]["id"] for e in r.json()["entry"]} == expected
    assert {t for _, t in sent[2:]} <= expected
    r = await world.get("a1", "Task/$worklist", list="nope")
    assert r.status_code == 400
    r = await world.get("a1", "Task/$worklist", list="to-answer", colour="red")
    assert r.status_code == 400


async def test_lists_follow_the_workflow(world: World, sent: list[tuple[str, str]]) -> None:
    _, task = sent[0]
    _, other = sent[3]
    assert (await world.op("a1", f"Task/{task}/$accept")).status_code == 200
    assert (await world.op("a1", f"Task/{other}/$accept")).status_code == 200
    assert (await world.op("a1", f"Task/{other}/$request-info", message="?")).status_code == 200
    taken = await world.get("a1", "Task/$worklist", list="taken")
    assert {e["resource"]["id"] for e in taken.json()["entry"]} == {task, other}
    assert not (await world.get("a2", "Task/$worklist", list="taken")).json().get("entry")
    # The shared worklist keeps the dossiers a colleague took, until they are answered.
    shared = await world.get("a2", "Task/$worklist", list="to-answer")
    assert shared.json()["total"] == 5
    assert (await world.op("a1", f"Task/{task}/$respond", conclusion="ok")).status_code == 200
    assert (await world.get("a2", "Task/$worklist", list="to-answer")).json()["total"] == 4
    # The requérant's side.
    waiting = await world.get("req", "Task/$worklist", list="sent-waiting")
    assert waiting.json()["total"] == 4
    info = await world.get("req", "Task/$worklist", list="info-requested")
    assert [e["resource"]["id"] for e in info.json()["entry"]] == [other]
    answered = await world.get("req", "Task/$worklist", list="answered")
    assert [e["resource"]["id"] for e in answered.json()["entry"]] == [task]
    assert answered.json()["entry"][0]["resource"]["businessStatus"]["coding"][0] == {
        "system": DOSSIER_STATUS,
        "code": "repondu",
    }
    # Outsiders have empty lists; administrators and the bureau des entrées have none (no ps role).
    assert not (await world.get("z1", "Task/$worklist", list="to-answer")).json().get("entry")
    assert (await world.get("adm2", "Task/$worklist", list="to-answer")).status_code == 403
    r = await world.client.get("Task/$worklist", headers=world.admin)
    assert r.status_code == 403


async def test_type_code_on_every_task(world: World, sent: list[tuple[str, str]]) -> None:
    for (_, task), kind in zip(sent, KINDS, strict=True):
        resource = (await world.get("req", f"Task/{task}")).json()
        assert resource["code"]["coding"][0] == {"system": DOSSIER_TYPE, "code": kind}
