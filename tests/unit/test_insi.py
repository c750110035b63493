"""INSi "recherche par traits": the SOAP request we build and the answers we read (no network), matricule keys,
and the FR Core rendering of the identities (fhir_server/identity/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from fhir_server.config import Settings
from fhir_server.identity import patient as identity
from fhir_server.identity.insi import (
    INSIdentity,
    INSiUnavailable,
    Traits,
    build_search_request,
    client_from_settings,
    matricule_key,
    normalize_trait,
    parse_search_response,
    valid_matricule,
)

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS = {"s": SOAP12, "a": "http://www.w3.org/2005/08/addressing", "r": "http://www.cnamts.fr/INSiRecSans"}
TRAITS = Traits("Œuvray-Lefèvre", ("Zoé", "Anne"), "F", "1975-12-01", "2A004")


def answer(inner: str, soap: str = SOAP12) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="{soap}"><env:Body>'
        f'<RESULTAT xmlns="http://www.cnamts.fr/INSiResultat">{inner}</RESULTAT></env:Body></env:Envelope>'
    ).encode()


def found(number: str = "1090763220834", key: str = "89", oid: str = "1.2.250.1.213.1.4.8", tiq: str = "") -> bytes:
    tiq = tiq or (
        "<NomNaissance>ECETINSI</NomNaissance><Prenom>PIERRE-ALAIN</Prenom>"
        "<ListePrenom>PIERRE-ALAIN MURIEL FLORIANT</ListePrenom><Sexe>M</Sexe>"
        "<DateNaissance>2009-07-14</DateNaissance><LieuNaissance>63220</LieuNaissance>"
    )
    return answer(
        "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU><INSACTIF><IdIndividu>"
        f"<NumIdentifiant>{number}</NumIdentifiant><Cle>{key}</Cle></IdIndividu><OID>{oid}</OID></INSACTIF>"
        f"<TIQ>{tiq}</TIQ></INDIVIDU>"
    )


def test_request_envelope() -> None:
    root = etree.fromstring(build_search_request(TRAITS, message_id="uuid:1"))
    assert root.tag == f"{{{SOAP12}}}Envelope"
    assert root.xpath("s:Header/a:Action/text()", namespaces=NS) == [
        "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
    ]
    assert root.xpath("s:Header/a:MessageID/text()", namespaces=NS) == ["uuid:1"]
    (search,) = root.xpath("s:Body/r:RECSANSVITALE", namespaces=NS)
    fields = [(etree.QName(c).namespace, etree.QName(c).localname, c.text) for c in search]
    assert fields == [
        (NS["r"], "NomNaissance", "OEUVRAY-LEFEVRE"),  # RNIV form: capitals, no diacritics, ligatures spelled out
        (NS["r"], "Prenom", "ZOE"),  # the first given name
        (NS["r"], "Sexe", "F"),
        (NS["r"], "DateNaissance", "1975-12-01"),
        (NS["r"], "LieuNaissance", "2A004"),
    ]
    without_place = etree.fromstring(build_search_request(Traits("Martin", ("Jean",), "M", "1960-01-01")))
    assert not without_place.xpath("//r:LieuNaissance", namespaces=NS)
    # The message ids differ from one request to the next.
    assert build_search_request(TRAITS) != build_search_request(TRAITS)


@pytest.mark.parametrize(
    ("typed", "normal"),
    [("d’Artagnan", "D'ARTAGNAN"), ("  Le  Gall ", "LE GALL"), ("Müller_Æsir", "MULLER AESIR"), ("Ñúñez", "NUNEZ")],
)
def test_normalized_traits(typed: str, normal: str) -> None:
    assert normalize_trait(typed) == normal


def test_matricule_keys() -> None:
    assert matricule_key("1090763220834") == "89"
    assert valid_matricule("109076322083489")
    assert not valid_matricule("109076322083488") and not valid_matricule("10907632208348") and not valid_matricule("")
    # Corsica: département 2A counts as 19, 2B as 18.
    assert matricule_key("185022A012345") == f"{97 - 1850219012345 % 97:02d}"
    assert matricule_key("185022B012345") == f"{97 - 1850218012345 % 97:02d}"
    assert valid_matricule("185022A012345" + matricule_key("185022A012345"))


def test_found_answer() -> None:
    result = parse_search_response(found())
    assert (result.outcome, result.code, result.label) == ("found", "00", "OK")
    assert result.identity == INSIdentity(
        "109076322083489",
        "1.2.250.1.213.1.4.8",
        Traits("ECETINSI", ("PIERRE-ALAIN", "MURIEL", "FLORIANT"), "M", "2009-07-14", "63220"),
    )
    # SOAP 1.1 envelopes are read too; the given names come from Prenom when ListePrenom is absent.
    tiq = "<NomNaissance>X</NomNaissance><Prenom>JEAN</Prenom><Sexe>F</Sexe><DateNaissance>1950-00-00</DateNaissance>"
    legacy = found(tiq=tiq).replace(SOAP12.encode(), SOAP11.encode())
    result = parse_search_response(legacy)
    assert result.identity is not None and result.identity.traits.given_names == ("JEAN",)
    assert result.identity.traits.birthplace is None


@pytest.mark.parametrize(("code", "outcome"), [("01", "not-found"), ("02", "several")])
def test_no_single_identity(code: str, outcome: str) -> None:
    result = parse_search_response(answer(f"<CR><CodeCR>{code}</CodeCR><LibelleCR>x</LibelleCR></CR>"))
    assert (result.outcome, result.identity) == (outcome, None)


@pytest.mark.parametrize(
    ("content", "kind", "words"),
    [
        (b"<html>proxy error</html>", "malformed", "not a SOAP envelope"),
        (b"not xml at all", "malformed", "not XML"),
        (answer("<CR><CodeCR>99</CodeCR><LibelleCR>Traits invalides</LibelleCR></CR>"), "malformed", "CR 99"),
        (answer(""), "malformed", "CR (none)"),
        (found(key="88"), "malformed", "matricule"),
        (found(oid="1.2.3"), "malformed", "unknown INS OID"),
        (found(tiq="<NomNaissance>X</NomNaissance>"), "malformed", "strict traits"),
        (
            f'<e:Envelope xmlns:e="{SOAP12}"><e:Body><e:Fault><e:Code><e:Value>e:Receiver</e:Value></e:Code>'
            "<e:Reason><e:Text>indisponible</e:Text></e:Reason></e:Fault></e:Body></e:Envelope>".encode(),
            "unavailable",
            "SOAP fault: e:Receiver indisponible",
        ),
        (
            f'<e:Envelope xmlns:e="{SOAP11}"><e:Body><e:Fault><faultcode>e:Server</faultcode>'
            "<faultstring>down</faultstring></e:Fault></e:Body></e:Envelope>".encode(),
            "unavailable",
            "SOAP fault: e:Server down",
        ),
    ],
)
def test_unusable_answers(content: bytes, kind: str, words: str) -> None:
    with pytest.raises(INSiUnavailable) as caught:
        parse_search_response(content)
    assert caught.value.kind == kind and words in caught.value.reason


def test_entities_are_not_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    evil = found().replace(b"ECETINSI</NomNaissance>", b"&x;</NomNaissance>", 1)
    evil = evil.replace(b"?>", f'?><!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>'.encode(), 1)
    try:
        result = parse_search_response(evil)
    except INSiUnavailable:
        return
    assert result.identity is None or "SECRET" not in result.identity.traits.birth_name


def test_settings() -> None:
    assert client_from_settings(Settings(insi_url=None)) is None
    assert client_from_settings(Settings(insi_url="https://insi.example/ws")) is not None


# ---- FR Core rendering ----------------------------------------------------------------------------------


def test_patient_from_insi() -> None:
    typed = {
        "resourceType": "Patient",
        "name": [{"family": "Ecetinsi", "given": ["Pierre"]}, {"use": "usual", "family": "DUVAL"}],
        "gender": "male",
        "birthDate": "2009-07-14",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.7", "value": "IPP1"}],
    }
    identity_ = parse_search_response(found()).identity
    assert identity_ is not None
    out = identity.recovered(typed, identity_, today="2025-06-01")
    assert out["identifier"][0] == {
        "use": "official",
        "type": {"coding": [{"system": identity.FR_0203, "code": "INS-NIR", "display": "NIR définitif"}]},
        "system": "urn:oid:1.2.250.1.213.1.4.8",
        "value": "109076322083489",
    }
    assert out["identifier"][1]["value"] == "IPP1"
    official, usual = out["name"]
    assert (official["use"], official["family"], official["given"]) == ("official", "ECETINSI", ["PIERRE-ALAIN"])
    assert official["extension"] == [
        {"url": identity.BIRTH_LIST_GIVEN_URL, "valueString": "PIERRE-ALAIN MURIEL FLORIANT"}
    ]
    assert usual == {"use": "usual", "family": "DUVAL"}
    assert identity.birthplace_code(out) == "63220"
    assert identity.typed_traits(out).given_names == ("PIERRE-ALAIN", "MURIEL", "FLORIANT")
    assert typed["name"][0] == {"family": "Ecetinsi", "given": ["Pierre"]}  # the input is not changed


def test_insi_dates() -> None:
    assert identity.fhir_date("1950-00-00") == "1950"
    assert identity.fhir_date("1950-03-00") == "1950-03"
    assert identity.fhir_date("1950-03-04") == "1950-03-04"


def test_search_traits_from_a_patient() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Martin", "given": ["Jeanne"]}], "birthDate": "1990"}
    typed = identity.typed_traits(patient)
    assert typed.missing() == ["sexe (gender)"]
    assert identity.typed_traits({**patient, "gender": "other"}).for_search() == (
        "INSi searches a sex M or F, the patient's gender is other"
    )
    assert "full birth date" in str(identity.typed_traits({**patient, "gender": "female"}).for_search())
    full = identity.typed_traits({**patient, "gender": "female", "birthDate": "1990-02-03"}).for_search()
    assert full == Traits("Martin", ("Jeanne",), "F", "1990-02-03", None)


def test_document_check_is_kept() -> None:
    mode = {"url": "validationMode", "valueCoding": {"system": "x", "code": "PA"}}
    status = {"url": "identityStatus", "valueCoding": {"system": identity.FR_0445, "code": "VALI"}}
    typed = {
        "resourceType": "Patient",
        "name": [{"family": "Ecetinsi", "given": ["Pierre"]}],
        "extension": [{"url": identity.IDENTITY_RELIABILITY_URL, "extension": [status, mode]}],
    }
    assert identity.identity_status(identity.provisional(typed)) == "VALI"
    identity_ = parse_search_response(found()).identity
    assert identity_ is not None
    qualified = identity.recovered(typed, identity_, today="2025-06-01")
    assert identity.identity_status(qualified) == "QUAL" and identity.document_check(qualified) == [mode]
    # VALI without the document it was checked against is not taken at its word.
    typed["extension"][0]["extension"] = [status]
    assert identity.identity_status(identity.provisional(typed)) == "PROV"
    assert identity.identity_status(identity.recovered(typed, identity_, today="2025-06-01")) == "RECUP"
