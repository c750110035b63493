"""QuestionnaireResponses are validated against their Questionnaire on every write: ours (profiles/), or one
stored in the database, or one written in the same transaction."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from fhir_server.conformance import CANONICAL_BASE
from tests.conftest import FIXTURES
from tests.helpers import FHIR_JSON, outcome_of, post

Q = f"{CANONICAL_BASE}/Questionnaire"
ANSWERS = f"{CANONICAL_BASE}/CodeSystem/teleexpertise-form-answer"


def avc_request() -> dict[str, Any]:
    resource = json.loads((FIXTURES / "teleexpertise" / "QuestionnaireResponse-tlx-example.json").read_text())
    resource.pop("id")
    return resource


def response(questionnaire: str, items: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    qr: dict[str, Any] = {"resourceType": "QuestionnaireResponse", "questionnaire": questionnaire, "status": status}
    if items:
        qr["item"] = items
    return qr


def answer(link_id: str, **value: Any) -> dict[str, Any]:
    return {"linkId": link_id, "answer": [value]}


def coded(code: str, system: str = ANSWERS) -> dict[str, Any]:
    return {"valueCoding": {"system": system, "code": code}}


def _item(qr: dict[str, Any], link_id: str) -> dict[str, Any]:
    def walk(items: list[dict[str, Any]]) -> dict[str, Any] | None:
        for item in items:
            if item["linkId"] == link_id:
                return item
            found = walk(item.get("item", []))
            if found:
                return found
        return None

    found = walk(qr["item"])
    assert found is not None
    return found


async def _refused(client: httpx.AsyncClient, resource: dict[str, Any], expression: str) -> list[dict[str, Any]]:
    r = await post(client, resource)
    assert r.status_code == 422, r.text
    issues = outcome_of(r)["issue"]
    assert any(expression in i.get("expression", []) for i in issues), issues
    return issues


async def test_a_complete_valid_response_is_accepted(client: httpx.AsyncClient) -> None:
    r = await post(client, avc_request())
    assert r.status_code == 201, r.text


async def test_a_required_item_is_needed_once_completed(client: httpx.AsyncClient) -> None:
    qr = avc_request()
    clinique = _item(qr, "clinique")
    clinique["item"] = [i for i in clinique["item"] if i["linkId"] != "nihss"]
    issues = await _refused(client, qr, "QuestionnaireResponse.item[0].item")
    assert "nihss" in issues[0]["diagnostics"]
    qr["status"] = "in-progress"  # a partial response may be saved
    assert (await post(client, qr)).status_code == 201


async def test_unknown_and_misplaced_link_ids(client: httpx.AsyncClient) -> None:
    qr = avc_request()
    qr["item"].append(answer("couleur-preferee", valueString="bleu"))
    await _refused(client, qr, "QuestionnaireResponse.item[5].linkId")
    qr = avc_request()
    qr["item"].append(answer("poids", valueDecimal=70.5))  # exists, but inside the "constantes" group
    issues = await _refused(client, qr, "QuestionnaireResponse.item[5].linkId")
    assert "elsewhere" in issues[0]["diagnostics"]


async def test_answer_types_follow_item_types(client: httpx.AsyncClient) -> None:
    qr = avc_request()
    _item(qr, "nihss")["answer"] = [{"valueString": "douze"}]
    await _refused(client, qr, "QuestionnaireResponse.item[0].item[1].answer[0].value")
    qr = avc_request()
    _item(qr, "question")["answer"] = [{"valueCoding": {"code": "x"}}]
    await _refused(client, qr, "QuestionnaireResponse.item[4].answer[0].value")
    qr = avc_request()
    _item(qr, "clinique")["answer"] = [{"valueString": "a group has no answer"}]
    await _refused(client, qr, "QuestionnaireResponse.item[0]")


async def test_answer_options(client: httpx.AsyncClient) -> None:
    qr = avc_request()
    _item(qr, "traitement-antithrombotique")["answer"] = [coded("heparine")]
    await _refused(client, qr, "QuestionnaireResponse.item[1].answer[0].value")
    qr = avc_request()
    _item(qr, "rankin-anterieur")["answer"] = [{"valueInteger": 7}]  # options are the integers 0 to 5
    await _refused(client, qr, "QuestionnaireResponse.item[0].item[2].answer[0].value")
    _item(qr, "rankin-anterieur")["answer"] = [{"valueInteger": 5}]
    assert (await post(client, qr)).status_code == 201


async def test_repeats(client: httpx.AsyncClient) -> None:
    qr = avc_request()
    _item(qr, "nihss")["answer"] = [{"valueInteger": 12}, {"valueInteger": 14}]
    await _refused(client, qr, "QuestionnaireResponse.item[0].item[1].answer[1]")
    qr = avc_request()
    qr["item"].append(copy.deepcopy(qr["item"][4]))  # "question" twice
    await _refused(client, qr, "QuestionnaireResponse.item[5]")
    # imagerie-realisee repeats: two answers are fine (the example has two).
    assert len(_item(avc_request(), "imagerie-realisee")["answer"]) == 2


async def test_enable_when(client: httpx.AsyncClient) -> None:
    qr = avc_request()
    _item(qr, "traitement-antithrombotique")["answer"] = [coded("aucun")]
    # derniere-prise-aod is enabled only for an AOD treatment.
    issues = await _refused(client, qr, "QuestionnaireResponse.item[2]")
    assert issues[0]["code"] == "business-rule"
    qr["item"] = [i for i in qr["item"] if i["linkId"] != "derniere-prise-aod"]
    assert (await post(client, qr)).status_code == 201


async def test_enable_when_on_booleans_and_required_in_a_disabled_group(client: httpx.AsyncClient) -> None:
    base = [
        answer("thrombolyse-indiquee", valueBoolean=False),
        answer("thrombectomie-indiquee", valueBoolean=False),
    ]
    assert (await post(client, response(f"{Q}/tlx-tele-avc-response", base))).status_code == 201
    with_group = [*base, {"linkId": "thrombolyse", "item": [answer("thrombolyse-dose", valueDecimal=63.0)]}]
    await _refused(client, response(f"{Q}/tlx-tele-avc-response", with_group), "QuestionnaireResponse.item[2]")
    with_group[0] = answer("thrombolyse-indiquee", valueBoolean=True)
    assert (await post(client, response(f"{Q}/tlx-tele-avc-response", with_group))).status_code == 201
    # A required item missing from a completed response.
    await _refused(client, response(f"{Q}/tlx-tele-avc-response", base[:1]), "QuestionnaireResponse.item")


@pytest.mark.parametrize("qid", ["tlx-tle-urgence-request", "tlx-tle-urgence-response"])
async def test_urgences_forms_need_no_answer(client: httpx.AsyncClient, qid: str) -> None:
    assert (await post(client, response(f"{Q}/{qid}", []))).status_code == 201


async def test_open_choice_takes_free_text(client: httpx.AsyncClient) -> None:
    items = [answer("specialite", valueString="Ophtalmologie"), answer("motif", valueString="Plaie de l'œil")]
    assert (await post(client, response(f"{Q}/tlx-tle-urgence-request", items))).status_code == 201
    items = [answer("specialite", **coded("neurochirurgie"))]
    assert (await post(client, response(f"{Q}/tlx-tle-urgence-request", items))).status_code == 201
    items = [answer("specialite", **coded("cardiologie"))]
    await _refused(
        client, response(f"{Q}/tlx-tle-urgence-request", items), "QuestionnaireResponse.item[0].answer[0].value"
    )


async def test_greffe_dialysis_days(client: httpx.AsyncClient) -> None:
    patient_info = {
        "linkId": "information-patient",
        "item": [
            answer("adresse-patient", valueString="3 place de la Comédie, 34000 Montpellier"),
            answer("telephone-patient", valueString="+33467000000"),
            {"linkId": "jours-dialyse", "answer": [coded("lundi"), coded("mercredi"), coded("vendredi")]},
        ],
    }
    items = [patient_info, answer("question", valueString="Éligibilité à l'inscription ?")]
    assert (await post(client, response(f"{Q}/tlx-greffe-renale-request", items))).status_code == 201
    patient_info["item"][2]["answer"].append(coded("mon", "http://hl7.org/fhir/days-of-week"))
    await _refused(
        client,
        response(f"{Q}/tlx-greffe-renale-request", items),
        "QuestionnaireResponse.item[0].item[2].answer[3].value",
    )


async def test_questionnaire_references(client: httpx.AsyncClient) -> None:
    # Ours but unknown: refused. Defined elsewhere: accepted unchecked.
    await _refused(client, response(f"{Q}/tlx-inconnu", []), "QuestionnaireResponse.questionnaire")
    assert (await post(client, response("http://example.org/Questionnaire/x", []))).status_code == 201
    # A version that exists, and one that does not.
    assert (await post(client, response(f"{Q}/tlx-tle-urgence-request|1.0.0", []))).status_code == 201
    await _refused(client, response(f"{Q}/tlx-tle-urgence-request|9.9", []), "QuestionnaireResponse.questionnaire")


async def test_a_questionnaire_from_the_database(client: httpx.AsyncClient) -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "url": "http://example.org/Questionnaire/satisfaction",
        "version": "2",
        "status": "active",
        "item": [
            {"linkId": "note", "text": "Note", "type": "integer", "required": True},
            {"linkId": "commentaire", "text": "Commentaire", "type": "string", "maxLength": 10},
        ],
    }
    created = (await post(client, questionnaire)).json()
    url = questionnaire["url"]
    assert (await post(client, response(url, [answer("note", valueInteger=4)]))).status_code == 201
    await _refused(client, response(url, [answer("commentaire", valueString="ok")]), "QuestionnaireResponse.item")
    too_long = [answer("note", valueInteger=4), answer("commentaire", valueString="bien trop long")]
    await _refused(client, response(f"{url}|2", too_long), "QuestionnaireResponse.item[1].answer[0].value")
    await _refused(
        client,
        response(f"Questionnaire/{created['id']}", [answer("note", valueString="4")]),
        "QuestionnaireResponse.item[0].answer[0].value",
    )
    # A new version of the Questionnaire, stored later, is the one used.
    questionnaire["item"][0]["type"] = "string"
    created["item"][0]["type"] = "string"
    r = await client.put(f"Questionnaire/{created['id']}", json=created, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200
    assert (await post(client, response(url, [answer("note", valueString="4")]))).status_code == 201


async def test_a_questionnaire_written_in_the_same_transaction(client: httpx.AsyncClient) -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "url": "http://example.org/Questionnaire/tx",
        "status": "active",
        "item": [{"linkId": "ok", "text": "OK ?", "type": "boolean", "required": True}],
    }

    def bundle(qr_items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": questionnaire, "request": {"method": "POST", "url": "Questionnaire"}},
                {
                    "resource": response(questionnaire["url"], qr_items),
                    "request": {"method": "POST", "url": "QuestionnaireResponse"},
                },
            ],
        }

    r = await client.post("", json=bundle([answer("ok", valueString="oui")]), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 422, r.text
    assert "Bundle.entry[1].resource.item[0].answer[0].value" in outcome_of(r)["issue"][0]["expression"]
    r = await client.post("", json=bundle([answer("ok", valueBoolean=True)]), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text


async def test_patch_and_update_are_validated(client: httpx.AsyncClient) -> None:
    created = (await post(client, avc_request())).json()
    ops = [{"op": "add", "path": "/item/-", "value": answer("inconnu", valueString="x")}]
    r = await client.patch(
        f"QuestionnaireResponse/{created['id']}",
        content=json.dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 422, r.text
    assert outcome_of(r)["issue"][0]["expression"] == ["QuestionnaireResponse.item[5].linkId"]
    bad = copy.deepcopy(created)
    _item(bad, "nihss")["answer"] = [{"valueBoolean": True}]
    r = await client.put(f"QuestionnaireResponse/{created['id']}", json=bad, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 422
    assert (await client.get(f"QuestionnaireResponse/{created['id']}/_history")).json()["total"] == 1


async def test_validate_operation_on_a_response(client: httpx.AsyncClient) -> None:
    qr = avc_request()
    _item(qr, "nihss")["answer"] = [{"valueInteger": 12}, {"valueInteger": 13}]
    r = await client.post("QuestionnaireResponse/$validate", json=qr, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200
    issues = outcome_of(r)["issue"]
    assert issues[0]["severity"] == "error"
    assert issues[0]["expression"] == ["QuestionnaireResponse.item[0].item[1].answer[1]"]
