"""The compte-rendu (CR) of a téléexpertise as a PDF (CCTP §3.1.2.7, spec §2.8 R-39): fpdf2 with DejaVu Sans.

Two steps, so the layout can be tested without a database and the loading without a PDF:
- `build_report_context(ctx, service_request_id, task_id)` loads the dossier through `ctx.store` (the
  ServiceRequest, the addressee Task, their PractitionerRoles, Practitioners, Organizations, Patient,
  QuestionnaireResponses with their Questionnaires, attachments and ImagingStudies) into a plain dict;
- `render_compte_rendu(context)` lays that dict out and returns the PDF bytes.

The context (every key optional; strings already formatted for display):

    {"dossier": {"id", "identifier", "type", "priority", "requested", "taken", "answered", "generated"},
     "requester": PERSON, "delegating": PERSON, "responder": PERSON,
     "patient": {"birth_name", "given", "usual_name", "birth_date", "sex", "birth_place", "ins", "ipp"},
     "request": PART, "response": PART, "conclusion": str}
    PERSON = {"id", "rpps", "family", "given", "structure_id", "structure", "communaute"}
    PART = {"form": str (the Questionnaire title), "items": [ITEM], "attachments": [file name],
            "studies": [StudyInstanceUID]}
    ITEM = {"text": question, "answers": [str], "items": [ITEM]}

Unicode text needs a TrueType font: DejaVu Sans from Debian's `fonts-dejavu-core`
(/usr/share/fonts/truetype/dejavu), the only system dependency of this module.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from fhir_server.teleexpertise.codes import BASE, DOSSIER_TYPE, DOSSIER_TYPE_LABELS, ORG_KIND

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
FONT = "DejaVu"
PARIS = ZoneInfo("Europe/Paris")

DELEGATING_EXT = f"{BASE}/StructureDefinition/tlx-ext-delegating-practitioner"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
INS_SYSTEMS = {
    "urn:oid:1.2.250.1.213.1.4.8": "INS-NIR",
    "urn:oid:1.2.250.1.213.1.4.9": "INS-NIA",
    "urn:oid:1.2.250.1.213.1.4.10": "INS-NIR de test",
    "urn:oid:1.2.250.1.213.1.4.11": "INS-NIA de test",
}
BIRTH_PLACE_EXT = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
INSEE_EXT = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
CR_LOINC = "85208-7"
SEX_LABELS = {"female": "Féminin", "male": "Masculin", "other": "Autre", "unknown": "Inconnu"}
PRIORITY_LABELS = {"stat": "urgente", "asap": "dès que possible", "urgent": "urgente", "routine": "programmée"}


# ---- rendering ----------------------------------------------------------------------------------------


def _font_dir() -> Path:
    for folder in FONT_DIRS:
        if (folder / "DejaVuSans.ttf").is_file() and (folder / "DejaVuSans-Bold.ttf").is_file():
            return folder
    raise RuntimeError("the compte-rendu PDF needs the DejaVu fonts (Debian package fonts-dejavu-core)")


class _Report(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, "", 7.5)
        self.set_text_color(110)
        self.cell(0, 5, f"{self.footer_text}    Page {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value if v not in (None, ""))
    return str(value)


class _Writer:
    LABEL_W = 58.0

    def __init__(self, pdf: _Report) -> None:
        self.pdf = pdf

    def heading(self, title: str) -> None:
        pdf = self.pdf
        pdf.ln(3)
        pdf.set_font(FONT, "B", 12)
        pdf.set_fill_color(230, 236, 245)
        pdf.cell(0, 8, title, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1.5)

    def subheading(self, title: str) -> None:
        self.pdf.ln(1)
        self.pdf.set_font(FONT, "B", 10.5)
        self.pdf.cell(0, 6, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def row(self, label: str, value: Any) -> None:
        pdf = self.pdf
        text = _text(value) or "—"
        pdf.set_font(FONT, "B", 9)
        y = pdf.get_y()
        pdf.multi_cell(self.LABEL_W, 5, label, new_x=XPos.RIGHT, new_y=YPos.TOP, align="L")
        label_bottom = pdf.get_y() if pdf.get_y() > y else y
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(0, 5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
        pdf.set_y(max(pdf.get_y(), label_bottom))

    def bullets(self, values: list[str], empty: str) -> None:
        pdf = self.pdf
        pdf.set_font(FONT, "", 9)
        for value in values or [empty]:
            pdf.set_x(pdf.l_margin + 4)
            pdf.multi_cell(0, 5, f"• {value}" if values else value, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")

    def items(self, items: list[dict[str, Any]], depth: int = 0) -> None:
        pdf = self.pdf
        indent = pdf.l_margin + 4 * depth
        for item in items:
            pdf.set_x(indent)
            pdf.set_font(FONT, "B", 9)
            pdf.multi_cell(
                0, 5, _text(item.get("text")) or "(question)", new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L"
            )
            pdf.set_font(FONT, "", 9)
            for answer in item.get("answers") or []:
                pdf.set_x(indent + 4)
                pdf.multi_cell(0, 5, _text(answer), new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
            if item.get("items"):
                self.items(item["items"], depth + 1)


def _person(w: _Writer, person: dict[str, Any], *, rpps: bool) -> None:
    w.row("Identifiant", person.get("id"))
    if rpps:
        w.row("RPPS", person.get("rpps"))
    w.row("Nom", person.get("family"))
    w.row("Prénom", person.get("given"))
    structure = person.get("structure")
    if person.get("structure_id"):
        structure = f"{structure or ''} ({person['structure_id']})".strip()
    w.row("Structure", structure)
    w.row("Communauté", person.get("communaute"))


def _part(w: _Writer, part: dict[str, Any], form_title: str) -> None:
    w.subheading(form_title + (f" : {part['form']}" if part.get("form") else ""))
    if part.get("items"):
        w.items(part["items"])
    else:
        w.bullets([], "Aucune réponse au formulaire")
    w.subheading("Pièces jointes")
    w.bullets(list(part.get("attachments") or []), "Aucune pièce jointe")
    w.subheading("Examens d'imagerie (StudyInstanceUID)")
    w.bullets(list(part.get("studies") or []), "Aucun examen")


def render_compte_rendu(context: dict[str, Any]) -> bytes:
    """The CR as PDF bytes (fields of spec §2.8: request part, patient, forms, attachments, studies,
    responder with RPPS, dates)."""
    folder = _font_dir()
    dossier = context.get("dossier") or {}
    pdf = _Report(format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, margin=18)
    pdf.add_font(FONT, "", str(folder / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(folder / "DejaVuSans-Bold.ttf"))
    pdf.set_lang("fr")
    title = "Compte-rendu de téléexpertise"
    pdf.set_title(f"{title} {dossier.get('identifier') or dossier.get('id') or ''}".strip())
    responder = context.get("responder") or {}
    pdf.set_author(" ".join(filter(None, [responder.get("given"), responder.get("family")])))
    pdf.set_creator("fhir-server")
    reference = dossier.get("identifier") or dossier.get("id") or ""
    pdf.footer_text = f"Télédossier {reference} — généré le {dossier.get('generated') or ''}"
    pdf.add_page()
    w = _Writer(pdf)

    pdf.set_font(FONT, "B", 16)
    pdf.cell(0, 10, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    w.row("Télédossier", dossier.get("identifier") or dossier.get("id"))
    w.row("Type", dossier.get("type"))
    w.row("Priorité", dossier.get("priority"))
    w.row("Demande du", dossier.get("requested"))
    if dossier.get("taken"):
        w.row("Pris en charge le", dossier.get("taken"))
    w.row("Réponse du", dossier.get("answered"))

    w.heading("Demande")
    w.subheading("Professionnel requérant")
    _person(w, context.get("requester") or {}, rpps=False)
    if context.get("delegating"):
        w.subheading("Professionnel à l'origine de la demande")
        _person(w, context["delegating"], rpps=False)
    patient = context.get("patient") or {}
    w.subheading("Patient")
    w.row("Nom de naissance", patient.get("birth_name"))
    w.row("Prénom(s) de naissance", patient.get("given"))
    if patient.get("usual_name"):
        w.row("Nom d'usage", patient.get("usual_name"))
    w.row("Date de naissance", patient.get("birth_date"))
    w.row("Sexe", patient.get("sex"))
    w.row("Lieu de naissance", patient.get("birth_place"))
    w.row("Matricule INS", patient.get("ins"))
    if patient.get("ipp"):
        w.row("IPP", patient.get("ipp"))
    _part(w, context.get("request") or {}, "Formulaire de demande")

    w.heading("Réponse")
    w.subheading("Auteur du compte-rendu")
    _person(w, context.get("responder") or {}, rpps=True)
    _part(w, context.get("response") or {}, "Formulaire de réponse")
    if context.get("conclusion"):
        w.subheading("Conclusion")
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(0, 5, _text(context["conclusion"]), new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
    return bytes(pdf.output())


# ---- loading the context ------------------------------------------------------------------------------


def display_instant(value: str | None) -> str | None:
    """A FHIR date/dateTime/instant as the French reader expects it, to the second, in Paris time."""
    if not value:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        y, m, d = value.split("-")
        return f"{d}/{m}/{y}"
    if re.fullmatch(r"\d{4}(-\d{2})?", value):
        return "/".join(reversed(value.split("-")))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(PARIS).strftime("%d/%m/%Y %H:%M:%S")


def _ref_parts(ctx: ServerContext, ref: Any) -> tuple[str, str] | None:
    reference = ref.get("reference") if isinstance(ref, dict) else ref
    if not isinstance(reference, str) or reference.startswith("#"):
        return None
    if reference.startswith(ctx.base_url + "/"):
        reference = reference[len(ctx.base_url) + 1 :]
    parts = reference.split("/")
    if len(parts) not in (2, 4) or not parts[0][:1].isupper():
        return None
    return parts[0], parts[1]


async def load_reference(ctx: ServerContext, ref: Any, expected: str | None = None) -> dict[str, Any] | None:
    """The current version of a referenced resource (`Type/id`, or absolute on this server), or None."""
    parts = _ref_parts(ctx, ref)
    if parts is None or (expected is not None and parts[0] != expected):
        return None
    doc = await ctx.store.current(*parts)
    return (doc or {}).get("res")


def ref_type(ctx: ServerContext, ref: Any) -> str | None:
    parts = _ref_parts(ctx, ref)
    return parts[0] if parts else None


def human_name(names: list[dict[str, Any]] | None, use: str | None = None) -> dict[str, Any]:
    names = names or []
    chosen = next((n for n in names if use and n.get("use") == use), None) or (names[0] if names else {})
    return chosen


def identifier_value(identifiers: list[dict[str, Any]] | None, system: str | None = None) -> str | None:
    for ident in identifiers or []:
        if system is None or ident.get("system") == system:
            return ident.get("value")
    return None


def _typed_identifier(identifiers: list[dict[str, Any]] | None) -> str | None:
    for ident in identifiers or []:
        if not ident.get("value"):
            continue
        kind = ident.get("type") or {}
        label = next((c.get("code") for c in kind.get("coding") or [] if c.get("code")), None) or kind.get("text")
        return f"{label} {ident['value']}" if label else ident["value"]
    return None


def is_communaute(org: dict[str, Any]) -> bool:
    codes = {c.get("code") for t in org.get("type") or [] for c in t.get("coding") or [] if c.get("system") == ORG_KIND}
    if codes:
        return "communaute" in codes
    return bool(org.get("partOf"))  # no kind given: a communauté is the one with a parent structure


async def org_pair(ctx: ServerContext, org: dict[str, Any] | None) -> tuple[dict | None, dict | None]:
    """(communauté, structure) of an Organization that is either."""
    if org is None:
        return None, None
    if is_communaute(org):
        return org, await load_reference(ctx, org.get("partOf"), "Organization")
    return None, org


async def person_of(ctx: ServerContext, ref: Any) -> dict[str, Any]:
    """PERSON of the context from a PractitionerRole (or Practitioner) reference."""
    role: dict[str, Any] | None = None
    practitioner: dict[str, Any] | None = None
    kind = ref_type(ctx, ref)
    if kind == "PractitionerRole":
        role = await load_reference(ctx, ref)
        practitioner = await load_reference(ctx, (role or {}).get("practitioner"), "Practitioner")
    elif kind == "Practitioner":
        practitioner = await load_reference(ctx, ref)
    person: dict[str, Any] = {}
    if practitioner is not None:
        name = human_name(practitioner.get("name"), "official")
        rpps = identifier_value(practitioner.get("identifier"), RPPS)
        person.update(
            rpps=rpps,
            id=rpps or _typed_identifier(practitioner.get("identifier")) or f"Practitioner/{practitioner.get('id')}",
            family=name.get("family"),
            given=" ".join(name.get("given") or []) or None,
        )
    elif isinstance(ref, dict) and ref.get("display"):
        person["family"] = ref["display"]
    org = await load_reference(ctx, (role or {}).get("organization"), "Organization")
    communaute, structure = await org_pair(ctx, org)
    if communaute is not None:
        person["communaute"] = communaute.get("name")
    if structure is not None:
        person["structure"] = structure.get("name")
        person["structure_id"] = _typed_identifier(structure.get("identifier"))
    return person


def patient_fields(patient: dict[str, Any] | None) -> dict[str, Any]:
    if patient is None:
        return {}
    official = human_name(patient.get("name"), "official")
    usual = next((n for n in patient.get("name") or [] if n.get("use") == "usual"), None)
    fields: dict[str, Any] = {
        "birth_name": official.get("family"),
        "given": " ".join(official.get("given") or []) or None,
        "birth_date": display_instant(patient.get("birthDate")),
        "sex": SEX_LABELS.get(patient.get("gender") or "", patient.get("gender")),
    }
    if usual and usual.get("family") != official.get("family"):
        fields["usual_name"] = usual.get("family")
    for ext in patient.get("extension") or []:
        if ext.get("url") != BIRTH_PLACE_EXT:
            continue
        address = ext.get("valueAddress") or {}
        insee = next(
            (e.get("valueCoding", {}).get("code") for e in address.get("extension") or [] if e.get("url") == INSEE_EXT),
            None,
        )
        place = address.get("city") or address.get("text") or address.get("country")
        fields["birth_place"] = f"{place} ({insee})" if place and insee else place or insee
    for ident in patient.get("identifier") or []:
        label = INS_SYSTEMS.get(ident.get("system") or "")
        if label and ident.get("value"):
            fields["ins"] = f"{ident['value']} ({label})"
            break
    return fields


def _answer_text(answer: dict[str, Any]) -> str:
    for key, value in answer.items():
        if not key.startswith("value"):
            continue
        kind = key[5:]
        if kind == "Boolean":
            return "Oui" if value else "Non"
        if kind in ("Date", "DateTime", "Time"):
            return display_instant(value) or str(value) if kind != "Time" else str(value)
        if kind == "Coding":
            return value.get("display") or value.get("code") or ""
        if kind == "Quantity":
            return f"{value.get('value', '')} {value.get('unit') or value.get('code') or ''}".strip()
        if kind == "Attachment":
            return value.get("title") or value.get("url") or "pièce jointe"
        if kind == "Reference":
            return value.get("display") or value.get("reference") or ""
        return str(value)
    return ""


def _question_texts(items: list[dict[str, Any]] | None, into: dict[str, str]) -> dict[str, str]:
    for item in items or []:
        if item.get("linkId") and item.get("text"):
            into[item["linkId"]] = item["text"]
        _question_texts(item.get("item"), into)
    return into


def _items(items: list[dict[str, Any]] | None, texts: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for item in items or []:
        answers = item.get("answer") or []
        children = _items(item.get("item"), texts)
        for answer in answers:  # answers may carry nested items too
            children += _items(answer.get("item"), texts)
        rendered = [t for t in (_answer_text(a) for a in answers) if t]
        if not rendered and not children:
            continue
        out.append(
            {
                "text": texts.get(item.get("linkId", "")) or item.get("text") or item.get("linkId"),
                "answers": rendered,
                "items": children,
            }
        )
    return out


async def questionnaire_of(ctx: ServerContext, canonical: str | None) -> dict[str, Any] | None:
    if not canonical:
        return None
    from fhir_server.search.engine import find_current

    url, _, version = canonical.partition("|")
    params = [("url", url)] + ([("version", version)] if version else [])
    found = await find_current(ctx, "Questionnaire", params, limit=20, strict=False)
    if not found:
        return await load_reference(ctx, canonical, "Questionnaire")  # a plain Questionnaire/id
    found.sort(key=lambda d: d["lu"], reverse=True)
    return found[0]["res"]


async def form_part(ctx: ServerContext, response: dict[str, Any] | None) -> dict[str, Any]:
    if response is None:
        return {}
    questionnaire = await questionnaire_of(ctx, response.get("questionnaire"))
    texts = _question_texts((questionnaire or {}).get("item"), {})
    part: dict[str, Any] = {"items": _items(response.get("item"), texts)}
    if questionnaire is not None:
        part["form"] = questionnaire.get("title") or questionnaire.get("name")
    part["attachments"] = _attachment_answers(response.get("item"))
    return part


def _attachment_answers(items: list[dict[str, Any]] | None) -> list[str]:
    names: list[str] = []
    for item in items or []:
        for answer in item.get("answer") or []:
            if isinstance(answer.get("valueAttachment"), dict):
                att = answer["valueAttachment"]
                names.append(att.get("title") or att.get("url") or "pièce jointe")
            names += _attachment_answers(answer.get("item"))
        names += _attachment_answers(item.get("item"))
    return names


def study_uid(study: dict[str, Any]) -> str | None:
    for ident in study.get("identifier") or []:
        if ident.get("system") == "urn:dicom:uid" and ident.get("value"):
            return ident["value"].removeprefix("urn:oid:")
    return None


async def _files_and_studies(ctx: ServerContext, refs: list[Any], part: dict[str, Any]) -> None:
    """Attachment file names and StudyInstanceUIDs of the resources `refs` point to (into `part`)."""
    from fhir_server.interactions.binary import storage_info

    attachments: list[str] = part.setdefault("attachments", [])
    studies: list[str] = part.setdefault("studies", [])
    for ref in refs:
        kind = ref_type(ctx, ref)
        if kind == "DocumentReference":
            doc = await load_reference(ctx, ref) or {}
            codes = {c.get("code") for c in (doc.get("type") or {}).get("coding") or []}
            if CR_LOINC in codes:
                continue  # the compte-rendu itself is not one of its attachments
            for content in doc.get("content") or []:
                att = content.get("attachment") or {}
                name = att.get("title") or att.get("url")
                if name and name not in attachments:
                    attachments.append(name)
        elif kind == "Binary":
            binary = await load_reference(ctx, ref) or {}
            name = (storage_info(binary) or {}).get("filename") or (
                ref.get("display") if isinstance(ref, dict) else None
            )
            attachments.append(name or _text(ref.get("reference") if isinstance(ref, dict) else ref))
        elif kind == "ImagingStudy":
            uid = study_uid(await load_reference(ctx, ref) or {})
            if uid and uid not in studies:
                studies.append(uid)
        elif kind == "DiagnosticReport":
            report = await load_reference(ctx, ref) or {}
            await _files_and_studies(ctx, report.get("imagingStudy") or [], part)


async def build_report_context(
    ctx: ServerContext,
    service_request_id: str,
    task_id: str,
    *,
    response_id: str | None = None,
    responder: str | None = None,
    answered: str | None = None,
    conclusion: str | None = None,
) -> dict[str, Any]:
    """The context of `render_compte_rendu` for the answer of Task `task_id` to ServiceRequest
    `service_request_id`, loaded through `ctx.store` (404 when either is unknown).

    Defaults follow the §7 mapping: the request form is the QuestionnaireResponse in
    ServiceRequest.supportingInfo, its attachments and studies the other supportingInfo; the answer form,
    attachments and studies come from Task.output; the responder is Task.owner once a requis took it in
    charge. The workflow may name the response (`response_id`), the responder (`responder`, a
    `PractitionerRole/id`), the answer time and a conclusion when they are not written yet.
    """
    request = (await ctx.store.read("ServiceRequest", service_request_id)).resource or {}
    task = (await ctx.store.read("Task", task_id)).resource or {}
    dossier_type = next(
        (
            c.get("display") or DOSSIER_TYPE_LABELS.get(c.get("code", "")) or c.get("code")
            for cat in request.get("category") or []
            for c in cat.get("coding") or []
            if c.get("system") == DOSSIER_TYPE
        ),
        None,
    )
    period = task.get("executionPeriod") or {}
    outputs = [o.get("valueReference") for o in task.get("output") or [] if isinstance(o.get("valueReference"), dict)]
    output_attachments = [
        o["valueAttachment"] for o in task.get("output") or [] if isinstance(o.get("valueAttachment"), dict)
    ]
    context: dict[str, Any] = {
        "dossier": {
            "id": request.get("id"),
            "identifier": identifier_value(request.get("identifier")),
            "type": dossier_type,
            "priority": PRIORITY_LABELS.get(request.get("priority") or "", request.get("priority")),
            "requested": display_instant(request.get("authoredOn")),
            "taken": display_instant(period.get("start")),
            "answered": display_instant(answered or period.get("end") or datetime.now(UTC).isoformat()),
            "generated": display_instant(datetime.now(UTC).isoformat()),
        },
        "requester": await person_of(ctx, request.get("requester")),
        "patient": patient_fields(await load_reference(ctx, request.get("subject"), "Patient")),
    }
    for ext in request.get("extension") or []:
        if ext.get("url") == DELEGATING_EXT and ext.get("valueReference"):
            context["delegating"] = await person_of(ctx, ext["valueReference"])

    # The request part.
    support = request.get("supportingInfo") or []
    request_qr_refs = [r for r in support if ref_type(ctx, r) == "QuestionnaireResponse"]
    request_qr = await load_reference(ctx, request_qr_refs[0]) if request_qr_refs else None
    context["request"] = await form_part(ctx, request_qr)
    await _files_and_studies(ctx, support, context["request"])

    # The response part.
    response_ref: Any = f"QuestionnaireResponse/{response_id}" if response_id else None
    if response_ref is None:
        response_ref = next((r for r in outputs if ref_type(ctx, r) == "QuestionnaireResponse"), None)
    response_qr = await load_reference(ctx, response_ref, "QuestionnaireResponse")
    context["response"] = await form_part(ctx, response_qr)
    await _files_and_studies(
        ctx, [r for r in outputs if ref_type(ctx, r) != "QuestionnaireResponse"], context["response"]
    )
    context["response"]["attachments"] += [a.get("title") or a.get("url") for a in output_attachments]

    who: Any = responder
    if who is None and ref_type(ctx, task.get("owner")) in ("PractitionerRole", "Practitioner"):
        who = task["owner"]
    if who is None:
        for ref in outputs:
            if ref_type(ctx, ref) == "DiagnosticReport":
                report = await load_reference(ctx, ref) or {}
                who = next((p for p in report.get("performer") or [] if ref_type(ctx, p) != "Organization"), None)
                conclusion = conclusion or report.get("conclusion")
    context["responder"] = await person_of(ctx, who)
    if conclusion:
        context["conclusion"] = conclusion
    return context
