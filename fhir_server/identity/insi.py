"""A client of the CNAM téléservice INSi, "recherche par traits" (rechercherInsAvecTraitsIdentite).

Input: the strict traits of a person — nom de naissance, prénom(s), sexe, date de naissance and (optional for
the search) the INSEE/COG code of the birthplace. Output (`SearchResult`): `found` with the matricule INS
(15 characters: the 13 of the NIR or NIA and its key), its OID (NIR `1.2.250.1.213.1.4.8`, NIA `.9`, test NIR
`.10`, `.11`) and the INS reference traits (birth name, list of given names, sex, birth date, birthplace);
`not-found`; `several` (ambiguous). No usable answer — timeout, refused connection, HTTP error, SOAP fault,
malformed answer — raises `INSiUnavailable`: callers decide what to do without INS (never block care).

What goes on the wire here: a SOAP 1.2 envelope (`application/soap+xml`, WS-Addressing `Action`
`urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite` and a `MessageID`) whose body is the
search `RECSANSVITALE` (namespace `http://www.cnamts.fr/INSiRecSans`: `NomNaissance`, `Prenom`, `Sexe`,
`DateNaissance`, `LieuNaissance`); the answer is `RESULTAT` (namespace `http://www.cnamts.fr/INSiResultat`):
`CR/CodeCR` 00 = one identity, 01 = none, 02 = several, `CR/LibelleCR`, and for 00 one `INDIVIDU` with
`INSACTIF` (`IdIndividu/NumIdentifiant` + `IdIndividu/Cle`, `OID`) and `TIQ` (`NomNaissance`, `Prenom`,
`ListePrenom`, `Sexe`, `DateNaissance`, `LieuNaissance`). These names follow what public INSi integrations
document; SOAP 1.1 envelopes are read as well. Traits are sent in the RNIV form (capitals, no diacritics).

NOT reproduced — this is not the homologated INSi package: no WSDL/XSD of the CNAM was available, so the
exact wire format is not guaranteed; the headers a real call needs are missing (the VIHF SAML assertion signed
with the professional's CPx card or the structure's certificate in `wsse:Security`, `ContexteBAM`,
`ContexteLPS` with the software's CNDA homologation identifiers), and so are the other INSi operations
(recherche par carte Vitale, vérification). Mutual TLS is supported (settings `insi_client_cert`, `_key`,
`insi_ca_file`, passed to httpx). Where a real adapter plugs in: anything with `async search_by_traits(traits)
-> SearchResult` (the `INSiService` protocol) returned by `client_from_settings`; or `FHIR_INSI_URL` pointing at
a homologated INSi gateway that speaks this envelope and adds the security headers itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import httpx
from lxml import etree

if TYPE_CHECKING:
    from fhir_server.config import Settings

log = logging.getLogger(__name__)

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
NS_SEARCH = "http://www.cnamts.fr/INSiRecSans"
NS_RESULT = "http://www.cnamts.fr/INSiResultat"
ACTION = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
CONTENT_TYPE = f'application/soap+xml; charset=utf-8; action="{ACTION}"'

CR_ONE, CR_NONE, CR_SEVERAL = "00", "01", "02"
# INS roots → FR Core 2.2 identifier type (fr-core-cs-v2-0203) and its display. FR Core calls `.11` INS-NIR-DEMO.
INS_OIDS: dict[str, tuple[str, str]] = {
    "1.2.250.1.213.1.4.8": ("INS-NIR", "NIR définitif"),
    "1.2.250.1.213.1.4.9": ("INS-NIA", "NIR temporaire"),
    "1.2.250.1.213.1.4.10": ("INS-NIR-TEST", "NIR TEST"),
    "1.2.250.1.213.1.4.11": ("INS-NIR-DEMO", "NIR DEMO"),
}
MAX_ANSWER_BYTES = 1 << 20  # an INSi answer is a few kB
_NUMBER = re.compile(r"^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}$")  # 13 characters; Corsica: département 2A / 2B
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")  # INSi dates; 00 for an unknown day or month
_PLACE = re.compile(r"^[0-9][0-9AB][0-9]{3}$")  # INSEE/COG commune (or 99xxx: country) code
_LIGATURES = str.maketrans({"Œ": "OE", "œ": "OE", "Æ": "AE", "æ": "AE", "ß": "SS", "’": "'"})
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)

Outcome = Literal["found", "not-found", "several"]


@dataclass(frozen=True)
class Traits:
    """The strict traits (RNIV): nom de naissance, prénoms de naissance (the first one first), sexe `M`/`F`,
    date de naissance `YYYY-MM-DD` (INSi answers may hold `00` for an unknown day or month), and the
    INSEE/COG code of the birthplace (optional for a search)."""

    birth_name: str
    given_names: tuple[str, ...]
    sex: str
    birth_date: str
    birthplace: str | None = None

    @property
    def first_name(self) -> str:
        return self.given_names[0] if self.given_names else ""


@dataclass(frozen=True)
class INSIdentity:
    matricule: str  # 15 characters: NIR/NIA (13) + key (2)
    oid: str
    traits: Traits  # the INS reference traits, as INSi gives them


@dataclass(frozen=True)
class SearchResult:
    outcome: Outcome
    code: str  # CodeCR
    label: str  # LibelleCR
    identity: INSIdentity | None = None


class INSiUnavailable(Exception):
    """No usable answer from INSi. `kind`: `timeout`, `unavailable` (unreachable, HTTP error, SOAP fault) or
    `malformed` (an answer we cannot read). `reason` is safe to show to the user (no address, no traits)."""

    def __init__(self, reason: str, *, kind: str = "unavailable") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class INSiService(Protocol):
    async def search_by_traits(self, traits: Traits) -> SearchResult: ...


# ---- traits and matricules ----------------------------------------------------------------------------


def normalize_trait(value: str) -> str:
    """The RNIV form of a name: capitals without diacritics; letters, space, hyphen and apostrophe only."""
    text = unicodedata.normalize("NFKD", value.translate(_LIGATURES))
    text = "".join(c for c in text if not unicodedata.combining(c)).upper()
    text = re.sub(r"[^A-Z' -]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def matricule_key(number: str) -> str:
    """The 2-digit key of a 13-character NIR/NIA: 97 − (number mod 97), Corsica's 2A/2B read as 19/18."""
    digits = number
    if number[5:7] in ("2A", "2B"):
        digits = number[:5] + ("19" if number[6] == "A" else "18") + number[7:]
    return f"{97 - int(digits) % 97:02d}"


def valid_matricule(matricule: str) -> bool:
    """15 characters, the 13 of a NIR/NIA and its right key."""
    return (
        len(matricule) == 15
        and bool(_NUMBER.match(matricule[:13]))
        and matricule[13:].isdigit()
        and matricule_key(matricule[:13]) == matricule[13:]
    )


# ---- SOAP ------------------------------------------------------------------------------------------------


def build_search_request(traits: Traits, message_id: str | None = None) -> bytes:
    """The SOAP envelope of a "recherche par traits" (without the security headers, see the module doc)."""
    envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA, "insi": NS_SEARCH})
    header = etree.SubElement(envelope, f"{{{SOAP12}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action").text = ACTION
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = message_id or f"uuid:{uuid.uuid4()}"
    body = etree.SubElement(envelope, f"{{{SOAP12}}}Body")
    search = etree.SubElement(body, f"{{{NS_SEARCH}}}RECSANSVITALE")
    fields = (
        ("NomNaissance", normalize_trait(traits.birth_name)),
        ("Prenom", normalize_trait(traits.first_name)),
        ("Sexe", traits.sex),
        ("DateNaissance", traits.birth_date),
        ("LieuNaissance", traits.birthplace),
    )
    for tag, value in fields:
        if value:
            etree.SubElement(search, f"{{{NS_SEARCH}}}{tag}").text = value
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def parse_search_response(content: bytes) -> SearchResult:
    """The answer of a "recherche par traits"; `INSiUnavailable` for a SOAP fault or an unreadable answer."""
    body = _body(_envelope(content))
    result = body.find("{*}RESULTAT")
    if result is None:
        raise INSiUnavailable("the INSi answer has no RESULTAT", kind="malformed")
    code, label = _text(result, "CR/{*}CodeCR"), _text(result, "CR/{*}LibelleCR")
    if code == CR_NONE:
        return SearchResult("not-found", code, label)
    if code == CR_SEVERAL:
        return SearchResult("several", code, label)
    if code != CR_ONE:
        raise INSiUnavailable(f"INSi answered CR {code or '(none)'} {label}".strip(), kind="malformed")
    individuals = result.findall("{*}INDIVIDU")
    if len(individuals) != 1:
        raise INSiUnavailable(f"INSi answered CR 00 with {len(individuals)} INDIVIDU", kind="malformed")
    return SearchResult("found", code, label, _identity(individuals[0]))


def _envelope(content: bytes) -> etree._Element:
    try:
        root = etree.fromstring(content, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise INSiUnavailable("the INSi answer is not XML", kind="malformed") from exc
    if root.tag not in (f"{{{SOAP12}}}Envelope", f"{{{SOAP11}}}Envelope"):
        raise INSiUnavailable("the INSi answer is not a SOAP envelope", kind="malformed")
    return root


def _body(envelope: etree._Element) -> etree._Element:
    soap = envelope.tag[1:].split("}", 1)[0]
    body = envelope.find(f"{{{soap}}}Body")
    if body is None:
        raise INSiUnavailable("the SOAP envelope has no Body", kind="malformed")
    fault = body.find(f"{{{soap}}}Fault")
    if fault is not None:
        raise INSiUnavailable(f"INSi answered a SOAP fault: {_fault_reason(fault)}")
    return body


def _fault_reason(fault: etree._Element) -> str:
    # SOAP 1.2: Reason/Text (and Code/Value); SOAP 1.1: faultstring (and faultcode).
    reason = fault.findtext("{*}Reason/{*}Text") or fault.findtext("faultstring") or ""
    code = fault.findtext("{*}Code/{*}Value") or fault.findtext("faultcode") or ""
    return " ".join(f"{code} {reason}".split())[:200] or "no reason given"


def _text(element: etree._Element, path: str) -> str:
    return (element.findtext("{*}" + path) or "").strip()


def _identity(individual: etree._Element) -> INSIdentity:
    active = individual.find("{*}INSACTIF")
    tiq = individual.find("{*}TIQ")
    if active is None or tiq is None:
        raise INSiUnavailable("the INSi answer lacks INSACTIF or TIQ", kind="malformed")
    matricule = _text(active, "IdIndividu/{*}NumIdentifiant") + _text(active, "IdIndividu/{*}Cle")
    oid = _text(active, "OID")
    if not valid_matricule(matricule):
        raise INSiUnavailable("the matricule INS in the INSi answer is not valid", kind="malformed")
    if oid not in INS_OIDS:
        raise INSiUnavailable(f"the INSi answer names an unknown INS OID {oid[:40]!r}", kind="malformed")
    given = tuple(_text(tiq, "ListePrenom").split()) or tuple(_text(tiq, "Prenom").split()[:1])
    birthplace = _text(tiq, "LieuNaissance") or None
    traits = Traits(_text(tiq, "NomNaissance"), given, _text(tiq, "Sexe"), _text(tiq, "DateNaissance"), birthplace)
    if not traits.birth_name or not given or traits.sex not in ("M", "F") or not _DATE.match(traits.birth_date):
        raise INSiUnavailable("the INSi answer lacks strict traits (TIQ)", kind="malformed")
    if traits.birthplace and not _PLACE.match(traits.birthplace):
        raise INSiUnavailable("the birthplace code in the INSi answer is not an INSEE code", kind="malformed")
    return INSIdentity(matricule, oid, traits)


# ---- HTTP ------------------------------------------------------------------------------------------------


class INSiClient:
    """INSi over HTTP(S) with httpx; one call per search (searches are rare: one per dossier created)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.url, self.timeout = url, timeout
        self.client_cert, self.client_key, self.ca_file = client_cert, client_key, ca_file

    def _verify(self) -> ssl.SSLContext | bool:
        if not (self.client_cert or self.ca_file):
            return True
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.client_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key) if self.client_key else None)
        return context

    async def search_by_traits(self, traits: Traits) -> SearchResult:
        payload = build_search_request(traits)
        try:
            verify = self._verify()
        except (OSError, ssl.SSLError) as exc:
            log.error("INSi TLS material cannot be loaded", extra={"error": str(exc)})
            raise INSiUnavailable("the INSi client certificate or CA file cannot be loaded") from exc
        try:
            # One deadline for the whole exchange: httpx's own timeouts apply per phase.
            async with asyncio.timeout(self.timeout):
                async with httpx.AsyncClient(timeout=self.timeout, verify=verify, follow_redirects=False) as http:
                    response = await http.post(self.url, content=payload, headers={"Content-Type": CONTENT_TYPE})
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise INSiUnavailable(f"INSi did not answer within {self.timeout:g} s", kind="timeout") from exc
        except httpx.HTTPError as exc:
            log.warning("INSi cannot be reached", extra={"error": repr(exc)})
            raise INSiUnavailable(f"INSi cannot be reached ({type(exc).__name__})") from exc
        if len(response.content) > MAX_ANSWER_BYTES:
            raise INSiUnavailable("the INSi answer is too large", kind="malformed")
        if response.status_code >= 400:
            reason = f"INSi answered HTTP {response.status_code}"
            try:
                parse_search_response(response.content)
            except INSiUnavailable as exc:
                if exc.kind != "malformed":  # a SOAP fault says why
                    reason += f" ({exc.reason})"
            raise INSiUnavailable(reason)
        return parse_search_response(response.content)


def client_from_settings(settings: Settings) -> INSiService | None:
    """The INSi service configured for this server, None when `insi_url` is unset (INSi not configured)."""
    if not settings.insi_url:
        return None
    return INSiClient(
        settings.insi_url,
        timeout=settings.insi_timeout_seconds,
        client_cert=settings.insi_client_cert,
        client_key=settings.insi_client_key,
        ca_file=settings.insi_ca_file,
    )
