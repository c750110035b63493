"""ORU^R01 and MDM^T02/T04/T10/T11 carrying documents (CI-SIS volets "Transmission de document(s) CDA
en HL7v2" and "Transmission au LPS d'un document CDA provenant d'un courriel MSSanté").

Each document OBX (OBX-2 ED, base64 PDF or CDA in OBX-5) gives a Binary holding the bytes and a
DocumentReference pointing to it; OBX-11 (or the MDM event) says what to do:

| OBX-11 / event | meaning | what is written |
| --- | --- | --- |
| F / T02 | new document | DocumentReference `current` + Binary (a known document id: its next version) |
| C / T10 | replacement | new DocumentReference `relatesTo: replaces` the previous one, which becomes `superseded` |
| D / T04, T11 | deletion | the DocumentReference becomes `entered-in-error` |

A document is known by its unique id: TXA-12 (MDM), else the CDA `ClinicalDocument/id`, else (a
payload that is not a readable CDA) a key built from the sender, the order number and the OBX
position. The replaced one is TXA-13, else the CDA `relatedDocument[@typeCode=RPLC]`, else that key.

With an OBR, a DiagnosticReport (results, imaging report) lists the current documents in
`presentedForm`, with the filler order number, the accession number (OBR-18, IPC-1 or the CDA's
ps3-20:accessionNumber) and the DICOM Study Instance UID (ZDS-1, IPC-3 or the CDA serviceEvent id of
an imaging report) as identifiers; it is `basedOn` the ServiceRequest of the order numbers (found,
else created). The DMP / MSSanté routing flags (OBX MetaDMPMSS: DESTDMP, DESTMSSANTEPS,
INVISIBLE_PATIENT...), the PRT recipients (RCT), the reply address (REPLY) and the e-mail bodies go
into one DocumentReference extension (ROUTING_URL); PRT SB (sent by) is the author.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_server.storage.store import new_id
from mappings.hl7v2.ack import (
    ERR_DATA_TYPE,
    ERR_REQUIRED_FIELD_MISSING,
    ERR_UNSUPPORTED_EVENT,
    HL7Reject,
    Processed,
)
from mappings.hl7v2.identifiers import DICOM_UID, Identifiers, document_identifier, token
from mappings.hl7v2.orders import link_service_request
from mappings.hl7v2.patients import PatientMapping, resolve
from mappings.hl7v2.segments import Message, Segment, is_oid
from mappings.hl7v2.writes import Batch, body_of

if TYPE_CHECKING:
    from fhir_server.config import Settings
    from fhir_server.context import ServerContext

ROUTING_URL = "urn:fhir-server:hl7v2:cisis-routing"
DOCUMENT_KEY = "urn:fhir-server:hl7v2:document-key"
LOINC = "http://loinc.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
MDM_EVENTS = {"T02": "F", "T10": "C", "T04": "D", "T11": "D"}
# OBX carrying routing metadata rather than a document (OBX-3.1, or OBX-3.3 = MetaDMPMSS).
ROUTING_FLAGS = {
    "MASQUE_PS",
    "INVISIBLE_PATIENT",
    "INVISIBLE_REP_LEGAUX",
    "INVISIBLE_REPRESENTANTS_LEGAUX",
    "INVISIBLE_REPRENSANTS_LEGAUX",
    "CONNEXION_SECRETE",
    "MODIF_CONF_CODE",
    "MODIF_CONFIDENTIALITYCODE",
    "DESTDMP",
    "DESTMSSANTEPS",
    "DESTMSSANTEPAT",
    "ACK_RECEPTION",
    "ACK_LECTURE_MSS",
    "ACK_LECTURE",
}
MAIL_BODIES = {"CORPSMAIL_PS": "mailBodyPS", "CORPSMAIL_PAT": "mailBodyPatient"}
DOC_STATUS = {"AU": "final", "LA": "final", "DO": "final", "IP": "preliminary", "PA": "preliminary"}
REPORT_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "X": "cancelled", "R": "preliminary"}
IMAGING_CODES = {"18748-4", "18747-6", "18782-3", "85430-7"}
XML_TYPES = {"XML": "text/xml", "PDF": "application/pdf", "TEXT": "text/plain", "HTML": "text/html", "RTF": "text/rtf"}


@dataclass
class Document:
    """One document OBX."""

    obx: Segment
    position: int
    action: str  # F new, C replace, D delete
    data: bytes
    content_type: str
    header: dict[str, Any] = field(default_factory=dict)  # ids read from the CDA header (cda_ids)
    unique_id: dict[str, Any] | None = None
    parent_id: dict[str, Any] | None = None
    key: dict[str, Any] | None = None


async def process(ctx: ServerContext, msg: Message, settings: Settings) -> Processed:
    if msg.message_type == "MDM" and msg.trigger not in MDM_EVENTS:
        raise HL7Reject("AE", ERR_UNSUPPORTED_EVENT, f"unsupported event {msg.trigger or '(none)'} for MDM")
    if msg.message_type == "ORU" and msg.trigger != "R01":
        raise HL7Reject("AE", ERR_UNSUPPORTED_EVENT, f"unsupported event {msg.trigger or '(none)'} for ORU")
    ids = Identifiers(msg.enc, settings.hl7v2_identifier_systems)
    mapping = PatientMapping(msg, ids)
    docs = documents_of(msg, ids)
    txa = msg.first("TXA")
    if not docs and not (msg.message_type == "MDM" and txa is not None and MDM_EVENTS[msg.trigger] == "D"):
        raise HL7Reject("AR", ERR_REQUIRED_FIELD_MISSING, "no document (OBX of type ED) in the message")
    async with AsyncExitStack() as stack:
        batch = Batch(ctx)
        patient_id = await resolve(ctx, batch, stack, mapping, update=False)
        return await Filing(ctx, msg, ids, batch, patient_id, docs).run()


def documents_of(msg: Message, ids: Identifiers) -> list[Document]:
    mdm_action = MDM_EVENTS.get(msg.trigger) if msg.message_type == "MDM" else None
    txa = msg.first("TXA")
    found: list[Document] = []
    for obx in msg.all("OBX"):
        code = obx.comp(3, 1).upper()
        if obx.text(2).upper() != "ED" or code in MAIL_BODIES or obx.comp(3, 3) == "MetaDMPMSS":
            continue
        if obx.comp(3, 2).startswith("XDM/1.0/DDM"):
            continue  # the MSSanté e-mail (subject and body) the document came with: routing metadata
        status = obx.text(11).upper()
        action = mdm_action or (status if status in ("F", "C", "D") else "F")
        data, content_type = _ed(msg, obx)
        doc = Document(obx, len(found), action, data, content_type)
        doc.header = cda_ids(data) if content_type == "text/xml" else {}
        if doc.header.get("id"):
            doc.unique_id = document_identifier(doc.header["id"])
        if doc.header.get("parent"):
            doc.parent_id = document_identifier(doc.header["parent"])
        if txa is not None and not found:
            # TXA-12 / TXA-13 name the (first) document of an MDM.
            if txa.reps(12):
                doc.unique_id = document_identifier(ei_text(txa, 12))
            if txa.reps(13):
                doc.parent_id = document_identifier(ei_text(txa, 13))
        order = _order_number(msg)
        doc.key = {"system": DOCUMENT_KEY, "value": f"{msg.sender}|{order or '-'}|{obx.comp(3, 1)}|{doc.position}"}
        found.append(doc)
    return found


def ei_text(seg: Segment, n: int) -> str:
    """A document id EI as text: `root^extension` when EI-3 is the OID root of EI-1, else EI-1."""
    value, root = seg.comp(n, 1), seg.comp(n, 3)
    return f"{root}^{value}" if is_oid(root) and not is_oid(value) else value


def _order_number(msg: Message) -> str:
    for name, n in (("OBR", 3), ("ORC", 3), ("OBR", 2), ("ORC", 2)):
        seg = msg.first(name)
        if seg is not None and seg.comp(n, 1):
            return seg.comp(n, 1)
    return ""


def _ed(msg: Message, obx: Segment) -> tuple[bytes, str]:
    """The bytes and media type of an OBX-5 ED `source^type^subtype^encoding^data` (or bare base64)."""
    raw = obx.reps(5)[0] if obx.reps(5) else ""
    parts = raw.split(msg.enc.comp)
    if len(parts) >= 5:
        kind, subtype, encoding, data = parts[1].upper(), parts[2].upper(), parts[3].upper(), parts[4]
    else:
        kind, subtype, encoding, data = "", "", "BASE64", parts[0]
    data = msg.enc.unescape(data).strip()
    try:
        if encoding in ("BASE64", "B64", ""):
            payload = base64.b64decode(data + "=" * (-len(data) % 4), validate=False)
        elif encoding == "HEX":
            payload = bytes.fromhex(data)
        else:  # A: plain text
            payload = data.encode("utf-8")
    except (binascii.Error, ValueError):
        raise HL7Reject("AR", ERR_DATA_TYPE, f"OBX-5 of OBX {obx.text(1)}: not valid {encoding} data") from None
    if not payload:
        raise HL7Reject("AR", ERR_REQUIRED_FIELD_MISSING, f"OBX-5 of OBX {obx.text(1)}: empty document")
    head = payload[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"%PDF"):
        return payload, "application/pdf"
    if head.startswith(b"<"):
        return payload, "text/xml"
    return payload, XML_TYPES.get(subtype) or XML_TYPES.get(kind) or "application/octet-stream"


def cda_ids(data: bytes) -> dict[str, Any]:
    """What filing needs from a CDA header: its id, the replaced document, accession and study ids.

    The full header → DocumentReference metadata mapping is `cda_document_metadata`; this reads only
    the identifiers that decide which stored document a message replaces or deletes.
    """
    from lxml import etree

    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return {}
    if etree.QName(root).localname != "ClinicalDocument":
        return {}
    ns = {"h": "urn:hl7-org:v3", "d": "urn:dicom-org:ps3-20"}

    def ii(node: Any) -> str:
        if node is None or not node.get("root"):
            return ""
        root_, ext = node.get("root"), node.get("extension")
        return f"{root_}^{ext}" if ext else root_

    out: dict[str, Any] = {"cda": True, "id": ii(root.find("h:id", ns))}
    code = root.find("h:code", ns)
    out["code"] = code.get("code") if code is not None else ""
    title = root.find("h:title", ns)
    if title is not None and title.text:
        out["title"] = title.text.strip()
    parent = root.find("h:relatedDocument[@typeCode='RPLC']/h:parentDocument/h:id", ns)
    out["parent"] = ii(parent)
    accession = root.find("h:inFulfillmentOf/h:order/d:accessionNumber", ns)
    if accession is not None and accession.get("extension"):
        out["accession"] = {"system": f"urn:oid:{accession.get('root')}", "value": accession.get("extension")}
    event = root.find("h:documentationOf/h:serviceEvent/h:id", ns)
    if out["code"] in IMAGING_CODES and event is not None and is_oid(event.get("root", "")):
        if event.get("extension") in (None, "", "studyInstanceUID"):
            out["study"] = event.get("root")
    return out


def cda_document_metadata(data: bytes) -> dict[str, Any] | None:
    """THE call site of the CDA header parser (`mappings/cda/parse.py`, the CDA part of issue #6): the
    DocumentReference it derives from the header (class, type, confidentiality, format, event codes,
    practice setting, facility type, author, custodian...); None when the CDA cannot be read."""
    try:
        from mappings.cda.parse import document_reference_from_cda

        return document_reference_from_cda(data)
    except Exception:
        return None  # a CDA the parser rejects is still filed with what the HL7 message says


class Filing:
    def __init__(
        self,
        ctx: ServerContext,
        msg: Message,
        ids: Identifiers,
        batch: Batch,
        patient_id: str,
        docs: list[Document],
    ) -> None:
        self.ctx, self.msg, self.ids, self.batch = ctx, msg, ids, batch
        self.patient_ref = {"reference": f"Patient/{patient_id}"}
        self.docs = docs
        self.obr = msg.first("OBR")
        self.orc = msg.first("ORC")
        self.txa = msg.first("TXA")
        self.notes: list[str] = []
        self.forms: list[dict[str, Any]] = []  # attachments of the documents this message files
        self.retired: set[str] = set()  # Binary urls of the documents it replaces or deletes
        self.deleted = 0
        self.report_current: dict[str, Any] | None = None  # the stored DiagnosticReport, if any

    async def run(self) -> Processed:
        encounter = await self._encounter()
        order_ref = await link_service_request(self.ctx, self.batch, self.msg, self.ids, self.patient_ref, encounter)
        routing = self._routing()
        report_id = await self._report_id()
        for doc in self.docs:
            await self._file(doc, encounter, order_ref, routing, report_id)
        if self.msg.message_type == "MDM" and not self.docs:
            await self._delete_by_id(document_identifier(ei_text(self.txa, 12)) if self.txa else None)
        if self.obr is not None:
            await self._report(report_id, encounter, order_ref)
        written = await self.batch.commit()
        text = " ".join([*(f"{r}" for r in written if r.startswith("DocumentReference/")), *self.notes])
        return Processed(text or "processed", written, self.patient_ref["reference"])

    async def _encounter(self) -> dict[str, Any] | None:
        from fhir_server.search.engine import find_current

        pv1 = self.msg.first("PV1")
        visit = self.ids.cx(pv1.reps(19)[0]) if pv1 is not None and pv1.reps(19) else None
        if visit is None:
            return None
        found = await find_current(self.ctx, "Encounter", [("identifier", token(visit))], limit=1, strict=True)
        return {"reference": f"Encounter/{found[0]['_id']}"} if found else None

    async def _find(self, identifier: dict[str, Any] | None) -> dict[str, Any] | None:
        from fhir_server.search.engine import find_current

        if identifier is None:
            return None
        found = await find_current(
            self.ctx, "DocumentReference", [("identifier", token(identifier))], limit=10, strict=True
        )
        if identifier.get("system") != DOCUMENT_KEY:
            # The `identifier` search also matches DocumentReference.identifier (e.g. the CDA setId a later
            # version carries, often the first version's id): a document id names its masterIdentifier.
            wanted = (identifier.get("system"), identifier["value"])
            found = [f for f in found if _master(f["res"]) == wanted]
        mine = [f for f in found if f["res"].get("subject") == self.patient_ref]
        if found and not mine and identifier.get("system") != DOCUMENT_KEY:
            # A document id is unique: the same id for another patient is an identity error, never a move.
            raise HL7Reject("AE", "205", f"document {identifier['value']} is filed for another patient")
        live = [f for f in mine if f["res"].get("status") == "current"]
        return (live or mine or [None])[0]

    # ---- documents -------------------------------------------------------------------------------

    async def _file(
        self,
        doc: Document,
        encounter: dict[str, Any] | None,
        order_ref: dict[str, Any] | None,
        routing: list[dict[str, Any]],
        report_id: str | None,
    ) -> None:
        if doc.action == "D":
            await self._delete(doc)
            return
        same = await self._find(doc.unique_id) if doc.unique_id else None
        if same is None and doc.unique_id is None:
            same = await self._find(doc.key)
        previous = None
        if doc.action == "C":
            previous = await self._find(doc.parent_id) if doc.parent_id else None
            if previous is None and doc.unique_id is None:
                previous = await self._find(doc.key)
            if previous is not None and same is not None and previous["_id"] == same["_id"]:
                same = None  # a replacement without a readable id: the new version is a new resource
        reference = self._document_reference(doc, encounter, order_ref, routing, report_id, previous)
        binary_id = new_id()
        doc_id = same["_id"] if same is not None else new_id()
        attachment = reference["content"][0]["attachment"]
        attachment["url"] = f"Binary/{binary_id}"
        self.batch.create(
            {
                "resourceType": "Binary",
                "contentType": doc.content_type,
                "securityContext": {"reference": f"DocumentReference/{doc_id}"},
                "data": base64.b64encode(doc.data).decode("ascii"),
            },
            binary_id,
        )
        if same is not None:
            self._retire(same)
            self.batch.update(same, reference)
        else:
            self.batch.create(reference, doc_id)
        self.forms.append(attachment)
        if previous is not None and previous["_id"] != doc_id:
            self._retire(previous)
            old = body_of(previous)
            if old.get("status") == "current":
                old["status"] = "superseded"
                self.batch.update(previous, old)
        elif doc.action == "C" and previous is None:
            self.notes.append(f"(replaced document {(doc.parent_id or {}).get('value', '?')} unknown here)")

    def _retire(self, stored: dict[str, Any]) -> None:
        """The stored document's content leaves the report's presented forms."""
        for content in stored["res"].get("content", []):
            url = content.get("attachment", {}).get("url")
            if url:
                self.retired.add(url)

    async def _delete(self, doc: Document) -> None:
        target = await self._find(doc.unique_id) if doc.unique_id else None
        if target is None:
            target = await self._find(doc.key)
        await self._delete_found(target, doc.unique_id or doc.key)

    async def _delete_by_id(self, identifier: dict[str, Any] | None) -> None:
        await self._delete_found(await self._find(identifier), identifier)

    async def _delete_found(self, target: dict[str, Any] | None, identifier: dict[str, Any] | None) -> None:
        if target is None:
            # The end state (no such current document) already holds: acknowledged, and said.
            self.notes.append(f"(document {(identifier or {}).get('value', '?')} unknown here: nothing to delete)")
            return
        body = body_of(target)
        if body.get("status") != "entered-in-error":
            body["status"] = "entered-in-error"
            body["docStatus"] = "entered-in-error"
            self.batch.update(target, body)
        self._retire(target)
        self.deleted += 1

    def _document_reference(
        self,
        doc: Document,
        encounter: dict[str, Any] | None,
        order_ref: dict[str, Any] | None,
        routing: list[dict[str, Any]],
        report_id: str | None,
        previous: dict[str, Any] | None,
    ) -> dict[str, Any]:
        msg, obx, txa = self.msg, doc.obx, self.txa
        ref: dict[str, Any] = {"resourceType": "DocumentReference", "status": "current"}
        if doc.unique_id:
            ref["masterIdentifier"] = doc.unique_id
        ref["identifier"] = [doc.key]
        completion = txa.text(17).upper() if txa is not None else ""
        ref["docStatus"] = DOC_STATUS.get(completion, "final")
        code = _loinc(msg, obx, 3) or (_loinc(msg, txa, 2) if txa is not None else None) or doc.header.get("code")
        if isinstance(code, str) and code:
            code = {"system": LOINC, "code": code}
        if code:
            ref["type"] = {"coding": [code]}
        ref["subject"] = self.patient_ref
        when = ""
        for seg, n in ((txa, 4), (obx, 14), (self.obr, 7), (msg.msh, 7)):
            if seg is not None and seg.text(n):
                when = seg.text(n)
                break
        date = msg.datetime(when, "document date", instant=True)
        if date:
            ref["date"] = date
        authors = self._authors()
        if authors:
            ref["author"] = authors
        if txa is not None and txa.reps(22):
            authenticator = self.ids.xcn(txa.reps(22)[0])
            if authenticator:
                ref["authenticator"] = authenticator
        if previous is not None:
            ref["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{previous['_id']}"}}]
        elif doc.action == "C" and doc.parent_id:
            ref["relatesTo"] = [{"code": "replaces", "target": {"identifier": doc.parent_id}}]
        title = doc.header.get("title") or obx.comp(3, 2)
        description = self._mail_subject()
        if description or title:
            ref["description"] = description or title
        attachment: dict[str, Any] = {
            "contentType": doc.content_type,
            "size": len(doc.data),
            "hash": base64.b64encode(hashlib.sha1(doc.data).digest()).decode("ascii"),
        }
        if title:
            attachment["title"] = title
        if date:
            attachment["creation"] = date
        ref["content"] = [{"attachment": attachment}]
        context: dict[str, Any] = {}
        if encounter:
            context["encounter"] = [encounter]
        related = [r for r in (order_ref, {"reference": f"DiagnosticReport/{report_id}"} if report_id else None) if r]
        if related:
            context["related"] = related
        if context:
            ref["context"] = context
        if routing:
            ref["extension"] = [{"url": ROUTING_URL, "extension": routing}]
        metadata = cda_document_metadata(doc.data) if doc.header.get("cda") else None
        if metadata:
            _complete(ref, metadata)
        return ref

    def _authors(self) -> list[dict[str, Any]]:
        authors: list[dict[str, Any]] = []
        for prt in self.msg.all("PRT"):
            if prt.comp(4, 1).upper() != "SB":
                continue
            person = self.ids.xcn(prt.reps(5)[0]) if prt.reps(5) else None
            org = self.ids.xon(prt.reps(8)[0]) if prt.reps(8) else None
            authors += [a for a in (person, org) if a]
        if not authors and self.txa is not None and self.txa.reps(5):
            author = self.ids.xcn(self.txa.reps(5)[0])
            if author:
                authors.append(author)
        return authors

    def _mail_subject(self) -> str:
        for obx in self.msg.all("OBX"):
            label = obx.comp(3, 2)
            if label.startswith("XDM/1.0/DDM+"):
                return label.removeprefix("XDM/1.0/DDM+").strip()
        return ""

    def _routing(self) -> list[dict[str, Any]]:
        """The CI-SIS MetaDMPMSS flags, the PRT recipients / reply address and the e-mail bodies."""
        msg = self.msg
        subs: list[dict[str, Any]] = []
        for obx in msg.all("OBX"):
            code = obx.comp(3, 1).upper()
            if code in ROUTING_FLAGS:
                value = obx.comp(5, 1).upper()
                if value in ("Y", "N"):
                    subs.append({"url": code, "valueBoolean": value == "Y"})
            elif code in MAIL_BODIES or obx.comp(3, 2).startswith("XDM/1.0/DDM"):
                try:
                    text = _ed(msg, obx)[0].decode("utf-8", errors="replace")
                except HL7Reject:
                    continue
                subs.append({"url": MAIL_BODIES.get(code, "mailBody"), "valueString": text})
            elif code == "COMP_LOT":
                subs.append({"url": "submissionSetComponent", "valueString": obx.comp(5, 1)})
        for prt in msg.all("PRT"):
            role = prt.comp(4, 1).upper()
            email = _email(msg, prt)
            if role == "RCT":
                parts: list[dict[str, Any]] = []
                person = self.ids.xcn(prt.reps(5)[0]) if prt.reps(5) else None
                org = self.ids.xon(prt.reps(8)[0]) if prt.reps(8) else None
                for who in (person, org):
                    if who and "identifier" in who:
                        parts.append({"url": "identifier", "valueIdentifier": who["identifier"]})
                    if who and who.get("display"):
                        parts.append({"url": "name", "valueString": who["display"]})
                if email:
                    parts.append({"url": "telecom", "valueContactPoint": {"system": "email", "value": email}})
                if parts:
                    subs.append({"url": "recipient", "extension": parts})
            elif role == "REPLY" and email:
                subs.append({"url": "replyTo", "valueContactPoint": {"system": "email", "value": email}})
        return subs

    # ---- the report --------------------------------------------------------------------------------

    async def _report_id(self) -> str | None:
        """The DiagnosticReport of this message: by filler order number, else the one a previous
        version of its document points to, else a new one."""
        from fhir_server.search.engine import find_current

        if self.obr is None:
            return None
        filler = self.ids.ei(self.obr.reps(3)[0], "FILL") if self.obr.reps(3) else None
        if filler is not None:
            found = await find_current(
                self.ctx, "DiagnosticReport", [("identifier", token(filler))], limit=1, strict=True
            )
            if found:
                self.report_current = found[0]
                return found[0]["_id"]
        for doc in self.docs:
            for ident in (doc.parent_id, doc.unique_id, doc.key):
                stored = await self._find(ident) if ident else None
                for rel in (stored or {}).get("res", {}).get("context", {}).get("related", []):
                    ref = rel.get("reference", "")
                    if ref.startswith("DiagnosticReport/"):
                        current = await self.ctx.store.current("DiagnosticReport", ref.split("/", 1)[1])
                        if current is not None and not current.get("gone"):
                            self.report_current = current
                            return current["_id"]
        return new_id()

    async def _report(self, report_id: str | None, encounter: dict[str, Any] | None, order_ref: Any) -> None:
        if report_id is None or self.obr is None:
            return
        msg, obr = self.msg, self.obr
        current = self.report_current
        report = body_of(current) if current is not None else {"resourceType": "DiagnosticReport"}
        identifiers = report.get("identifier", [])
        for ident in self._report_identifiers():
            if not any(i.get("system") == ident["system"] and i.get("value") == ident["value"] for i in identifiers):
                identifiers.append(ident)
        if identifiers:
            report["identifier"] = identifiers
        if order_ref:
            report["basedOn"] = [order_ref]
        status = REPORT_STATUS.get(obr.text(25).upper(), "final")
        code = _loinc(msg, obr, 4)
        imaging = (code or {}).get("code") in IMAGING_CODES or msg.message_type == "OMI"
        section = obr.text(24).upper() or ("RAD" if imaging else "LAB" if msg.message_type == "ORU" else "")
        if section:
            report["category"] = [{"coding": [{"system": V2_0074, "code": section}]}]
        report["code"] = {"coding": [code]} if code else {"text": obr.comp(4, 2) or "report"}
        report["subject"] = self.patient_ref
        if encounter:
            report["encounter"] = encounter
        effective = msg.datetime(obr.text(7), "OBR-7")
        if effective:
            report["effectiveDateTime"] = effective
        issued = msg.datetime(obr.text(22), "OBR-22", instant=True)
        if issued:
            report["issued"] = issued
        new_urls = {a.get("url") for a in self.forms}
        kept = [
            f
            for f in report.get("presentedForm", [])
            if f.get("url") not in self.retired and f.get("url") not in new_urls
        ]
        forms = kept + [
            {k: v for k, v in a.items() if k in ("contentType", "url", "size", "hash", "title", "creation")}
            for a in self.forms
        ]
        if forms:
            report["presentedForm"] = forms
        else:
            report.pop("presentedForm", None)
            if self.deleted:
                status = "entered-in-error"  # every document of the report was deleted
        report["status"] = status
        if current is None:
            if self.forms:
                self.batch.create(report, report_id)
        elif report != current["res"]:
            self.batch.update(current, report)

    def _report_identifiers(self) -> list[dict[str, Any]]:
        msg, obr = self.msg, self.obr
        assert obr is not None
        out: list[dict[str, Any]] = []
        if obr.reps(3):
            filler = self.ids.ei(obr.reps(3)[0], "FILL")
            if filler:
                out.append(filler)
        accession = None
        ipc = msg.first("IPC")
        if ipc is not None and ipc.reps(1):
            accession = self.ids.ei(ipc.reps(1)[0], "ACSN")
        elif obr.text(18):
            accession = self.ids.ei(obr.reps(18)[0], "ACSN")
        else:
            header = next((d.header for d in self.docs if d.header.get("accession")), {})
            if header:
                accession = {**header["accession"], "type": _acsn()}
        if accession:
            out.append(accession)
        study = ""
        zds = msg.first("ZDS")
        if zds is not None:
            study = zds.comp(1, 1)
        if not study and ipc is not None:
            study = ipc.comp(3, 1)
        if not study:
            study = next((d.header["study"] for d in self.docs if d.header.get("study")), "")
        if is_oid(study):
            out.append({"system": DICOM_UID, "value": f"urn:oid:{study}"})
        return out


def _complete(ref: dict[str, Any], cda: dict[str, Any]) -> None:
    """Complete (never override) what the HL7 message says with what the CDA header says: the XDS
    codes (class, type, confidentiality, format, event, practice setting, facility) and the actors."""
    for key in ("category", "securityLabel", "custodian", "authenticator", "type", "masterIdentifier", "author"):
        if key in cda and key not in ref:
            ref[key] = cda[key]
    known = {(i.get("system"), i.get("value")) for i in ref.get("identifier", [])}
    ref["identifier"] = ref.get("identifier", []) + [
        i for i in cda.get("identifier", []) if (i.get("system"), i.get("value")) not in known
    ]
    content = (cda.get("content") or [{}])[0]
    if "format" in content:
        ref["content"][0]["format"] = content["format"]
    language = content.get("attachment", {}).get("language")
    if language:
        ref["content"][0]["attachment"].setdefault("language", language)
    context = {
        k: v for k, v in cda.get("context", {}).items() if k in ("event", "period", "facilityType", "practiceSetting")
    }
    if context:
        ref["context"] = {**context, **ref.get("context", {})}


def _master(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    master = resource.get("masterIdentifier") or {}
    return master.get("system"), master.get("value")


def _acsn() -> dict[str, Any]:
    return {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}


def _loinc(msg: Message, seg: Segment | None, n: int) -> dict[str, Any] | None:
    if seg is None:
        return None
    code, display, system = seg.comp(n, 1), seg.comp(n, 2), seg.comp(n, 3).upper()
    if not code or (system and system not in ("LN", "LOINC")):
        return None
    if not system and not (code[:1].isdigit() and "-" in code):
        return None
    coding = {"system": LOINC, "code": code}
    if display:
        coding["display"] = display
    return coding


def _email(msg: Message, prt: Segment) -> str:
    # PRT-15 XTN: ^NET^X.400^address (the address in XTN-4).
    for rep in range(len(prt.reps(15))):
        address = prt.comp(15, 4, rep)
        if "@" in address:
            return address
    return ""
