"""The FHIR side of the imaging store: one ImagingStudy per study and one Endpoint for our WADO-RS base.

Both are written through the versioned resource store (`ctx.store`), so they have history, search and
the usual access rules. The ImagingStudy is rebuilt from the index documents each time it is written
(whatever instance of the server writes it, it is complete), its id is derived from the Study Instance
UID (no lookup, no duplicate under concurrency), and an unchanged rebuild writes no new version.
DicomStore decides when to write (store.py: at study creation, every FLUSH_EVERY instances or
FLUSH_SECONDS, and at completion), so a 2,000-instance study costs a handful of versions, not 2,000.

The subject is the Patient whose identifier is PatientID in the system named by IssuerOfPatientID
(an OID, a URI, or a name mapped by FHIR_HL7V2_IDENTIFIER_SYSTEMS, as for HL7 v2 assigning
authorities); without an issuer, a PatientID held by exactly one Patient. When none matches, the
subject is a logical reference by identifier, and the link is retried at each later write.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dicomweb import dicom_json as dj
from fhir_server.errors import FHIRError
from fhir_server.search.engine import find_current

if TYPE_CHECKING:
    from dicomweb.store import DicomStore
    from fhir_server.context import ServerContext

DCM = "http://dicom.nema.org/resources/ontology/DCM"
OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
MAX_LINK_ATTEMPTS = 5
TRANSFER_STATE = "https://fhir-server.example/fhir/StructureDefinition/tlx-ext-transfer-state"


def endpoint_id(wado_base: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, wado_base))


def patient_system(ctx: ServerContext, issuer: str, attrs: dj.JSON) -> str | None:
    """The FHIR identifier system of a PatientID, from its issuer; None when it cannot be named."""
    mapped = ctx.settings.hl7v2_identifier_systems.get(issuer) if issuer else None
    if mapped:
        return mapped
    if issuer and OID_RE.match(issuer):
        return f"urn:oid:{issuer}"
    if issuer.startswith(("urn:", "http://", "https://")):
        return issuer
    qualifiers = dj.first(attrs, dj.T["IssuerOfPatientIDQualifiersSequence"]) or {}
    entity = dj.text(qualifiers, dj.T["UniversalEntityID"])
    if entity and dj.text(qualifiers, dj.T["UniversalEntityIDType"]) == "ISO" and OID_RE.match(entity):
        return f"urn:oid:{entity}"
    return None


class ImagingStudySync:
    def __init__(self, ctx: ServerContext, store: DicomStore) -> None:
        self.ctx = ctx
        self.store = store
        self.endpoint = endpoint_id(store.base)
        self._endpoint_ready = False

    async def ensure_endpoint(self) -> str:
        """The Endpoint resource for our WADO-RS base (created once, updated if the address moved)."""
        if self._endpoint_ready:
            return self.endpoint
        resource = {
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "dicom-wado-rs",
                "display": "DICOM WADO-RS",
            },
            "name": "DICOMweb (WADO-RS) of this server",
            "payloadType": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
                            "code": "DICOM",
                            "display": "DICOM",
                        }
                    ]
                }
            ],
            "payloadMimeType": ["application/dicom"],
            "address": self.store.base,
        }
        current = await self.ctx.store.current("Endpoint", self.endpoint)
        if current is None or current.get("gone") or _strip(current.get("res")) != _strip(resource):
            await self.ctx.store.write("Endpoint", self.endpoint, resource)
        self._endpoint_ready = True
        return self.endpoint

    async def find_patient(self, study: dict[str, Any]) -> str | None:
        pid = study.get("pid") or ""
        if not pid:
            return None
        system = patient_system(self.ctx, study.get("issuer") or "", study.get("attrs") or {})
        if study.get("issuer") and system is None:
            return None  # an issuer we cannot name: a same-valued identifier elsewhere is not this patient
        value = pid.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")
        criteria = [("identifier", f"{system}|{value}" if system else value)]
        found = await find_current(self.ctx, "Patient", criteria, limit=2, strict=False)
        return found[0]["_id"] if len(found) == 1 else None

    async def write(self, study_uid: str, status: str) -> None:
        study = await self.store.study_doc(study_uid)
        if study is None:
            return
        series_docs = await self.store.series_docs(study_uid)
        instances = await self.store.study_members(study_uid)
        await self.write_prepared(study, series_docs, instances, status)

    async def write_prepared(
        self,
        study: dict[str, Any],
        series_docs: list[dict[str, Any]],
        instances: dict[str, list[dict[str, Any]]],
        status: str,
    ) -> None:
        """Write the ImagingStudy from documents already read (the completion reads them once)."""
        study_uid = study["_id"]
        endpoint = await self.ensure_endpoint()
        patient = study.get("patient") or await self.find_patient(study)
        if patient and patient != study.get("patient"):
            await self.store.set_patient(study_uid, patient)
        built = self.build(study, series_docs, instances, status, patient, endpoint)
        rid = study["fhir"]
        # What others added to the ImagingStudy (basedOn: a télédossier it is linked to, see
        # fhir_server/teleexpertise/imaging.py) is carried over; the write is conditional on the version
        # read, so a link made meanwhile is not lost (retried on the newer version).
        for attempt in range(MAX_LINK_ATTEMPTS):
            current = await self.ctx.store.current("ImagingStudy", rid)
            live = current is not None and not current.get("gone") and current.get("res")
            resource = _with_links(built, current["res"] if live else None)
            if live and _strip(current.get("res")) == _strip(resource):
                return
            try:
                await self.ctx.store.write("ImagingStudy", rid, resource, if_match=current["v"] if live else None)
                return
            except FHIRError as exc:
                if exc.status != 412 or attempt == MAX_LINK_ATTEMPTS - 1:
                    raise

    def build(
        self,
        study: dict[str, Any],
        series_docs: list[dict[str, Any]],
        instances: dict[str, list[dict[str, Any]]],
        status: str,
        patient: str | None,
        endpoint: str,
    ) -> dict[str, Any]:
        attrs = study.get("attrs") or {}
        resource: dict[str, Any] = {
            "resourceType": "ImagingStudy",
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study['_id']}"}],
            "status": status,
        }
        if study.get("acc"):
            resource["identifier"].append(
                {
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                    "value": study["acc"],
                }
            )
        modalities = sorted({s.get("mod") for s in series_docs if s.get("mod")})
        if modalities:
            resource["modality"] = [{"system": DCM, "code": m} for m in modalities]
        resource["subject"] = self._subject(study, attrs, patient)
        started = self._started(study, attrs)
        if started:
            resource["started"] = started
        resource["endpoint"] = [{"reference": f"Endpoint/{endpoint}"}]
        total = sum(len(instances.get(s["_id"], [])) for s in series_docs)
        # Téléexpertise (spec §7.1): the requis sees that a transfer is still in progress, and how far it got
        # (the instances stored when this version was written: the store rewrites it in batches).
        resource["extension"] = [
            {
                "url": TRANSFER_STATE,
                "extension": [
                    {"url": "state", "valueCode": "in-progress" if status == "registered" else "complete"},
                    {"url": "received", "valueUnsignedInt": total},
                ],
            }
        ]
        resource["numberOfSeries"] = len(series_docs)
        resource["numberOfInstances"] = total
        if study.get("desc"):
            resource["description"] = study["desc"]
        series_out = []
        for s in series_docs:
            item: dict[str, Any] = {"uid": s["_id"]}
            if isinstance(s.get("num"), int) and s["num"] >= 0:
                item["number"] = s["num"]
            item["modality"] = {"system": DCM, "code": s.get("mod") or "OT"}
            if s.get("sdesc"):
                item["description"] = s["sdesc"]
            members = instances.get(s["_id"], [])
            item["numberOfInstances"] = len(members)
            if s.get("body"):
                item["bodySite"] = {"display": s["body"]}
            if members:
                item["instance"] = [self._instance(i) for i in members]
            series_out.append(item)
        if series_out:
            resource["series"] = series_out
        return resource

    def _subject(self, study: dict[str, Any], attrs: dj.JSON, patient: str | None) -> dict[str, Any]:
        name = dj.text(attrs, dj.T["PatientName"]).replace("^", " ").strip()
        if patient:
            ref: dict[str, Any] = {"reference": f"Patient/{patient}"}
        elif study.get("pid"):
            identifier: dict[str, Any] = {"value": study["pid"]}
            system = patient_system(self.ctx, study.get("issuer") or "", attrs)
            if system:
                identifier["system"] = system
            ref = {"type": "Patient", "identifier": identifier}
        else:
            ref = {"type": "Patient"}
        if name:
            ref["display"] = name
        elif "reference" not in ref and "identifier" not in ref:
            ref["display"] = "unidentified patient"
        return ref

    def _started(self, study: dict[str, Any], attrs: dj.JSON) -> str | None:
        date = study.get("date") or ""
        if not re.fullmatch(r"\d{8}", date):
            return None
        day = f"{date[:4]}-{date[4:6]}-{date[6:]}"
        time_value = study.get("time") or ""
        if not re.fullmatch(r"\d{6}\.\d{6}", time_value):
            return day
        hh, mm, ss = int(time_value[:2]), int(time_value[2:4]), int(time_value[4:6])
        if hh > 23 or mm > 59 or ss > 59:
            return day
        offset = dj.text(attrs, dj.tag_of("TimezoneOffsetFromUTC"))
        if re.fullmatch(r"[+-]\d{4}", offset):
            zone = f"{offset[:3]}:{offset[3:]}"
        else:
            # DICOM times without an offset are local: the site's zone (the one HL7 v2 uses).
            try:
                local = datetime(int(date[:4]), int(date[4:6]), int(date[6:]), hh, mm, ss)
                delta = local.replace(tzinfo=ZoneInfo(self.ctx.settings.hl7v2_timezone)).utcoffset()
            except (ValueError, KeyError):
                return day
            minutes = int(delta.total_seconds() // 60) if delta is not None else 0
            sign = "+" if minutes >= 0 else "-"
            zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        return f"{day}T{hh:02d}:{mm:02d}:{ss:02d}{zone}"

    def _instance(self, inst: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uid": inst["_id"],
            "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{inst['cls']}"},
        }
        if isinstance(inst.get("num"), int) and inst["num"] >= 0:
            out["number"] = inst["num"]
        return out


def _with_links(resource: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """The rebuilt resource with the current version's `basedOn` (links are not DICOM data)."""
    if current and current.get("basedOn"):
        return {**resource, "basedOn": current["basedOn"]}
    return resource


def _strip(resource: dict[str, Any] | None) -> dict[str, Any] | None:
    if resource is None:
        return None
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}
