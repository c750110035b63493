"""Structural validation of FHIR R4 (4.0.1) resources in their JSON form.

``validate_resource(resource, expected_type=None)`` returns a list of ``Issue`` (empty when
the resource is valid) and never raises, whatever JSON value it is given.

Two passes:

1. A strict walk of the JSON against the element definitions.  For the resource types that
   R4 and R4B share, the definitions come from the fhir.resources R4B models
   (``model_fields``: alias, annotation, ``json_schema_extra``), cached per model class and
   corrected by the R4 vs R4B differences in ``_R4_*`` below.  For the R4 types that R4B
   lacks or changed (``TABLE_TYPES``) they come from tables generated from the official R4
   definitions.  The walk refuses what FHIR JSON forbids and pydantic's lax mode lets
   through: unknown elements, JSON strings for booleans/numbers and numbers for strings,
   floats and out-of-range values for integers, arrays for single elements and single values
   for repeating ones, empty strings/objects/arrays, nulls (except as placeholders in
   primitive arrays paired with a ``_element`` array), codes outside R4 required bindings,
   malformed primitives (id, date, dateTime, instant, ...), bad XHTML narrative, misplaced
   ``_element`` siblings, and it validates contained resources and Bundle/Parameters
   resources recursively with their own type.
2. When the walk finds nothing, the R4B pydantic model of the resource validates it too and
   its errors are mapped to issues - a second opinion, minus the places where R4B is known
   to disagree with R4 (see ``_Walk.suppressed``).  ``model_check=False`` skips it.

Element definitions are built lazily on first use of a type; ``warm_up()`` builds them all.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import html.entities
import re
import types
import typing
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import ValidationError

from fhir_server.validation_types import (
    MODEL_BINDINGS,
    R4_RESOURCE_TYPES_TEXT,
    TABLE_TYPES,
    VALUE_SETS,
)

__all__ = [
    "R4_RESOURCE_TYPES",
    "TYPES_WITHOUT_R4B_MODEL",
    "Issue",
    "is_known_type",
    "validate_resource",
    "warm_up",
]

R4_RESOURCE_TYPES: frozenset[str] = frozenset(R4_RESOURCE_TYPES_TEXT.split())

# R4 resource types validated from the generated R4 tables instead of an R4B model: the
# R4-only types, plus Evidence and EvidenceVariable whose R4B models are a different design.
TYPES_WITHOUT_R4B_MODEL: frozenset[str] = frozenset(R4_RESOURCE_TYPES & TABLE_TYPES.keys())


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: FHIR issue severity and type code, text, FHIRPath(s)."""

    severity: str
    code: str
    diagnostics: str
    expression: tuple[str, ...]

    def as_fhir(self) -> dict[str, Any]:
        """The issue as an R4 ``OperationOutcome.issue`` JSON object."""
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def is_known_type(name: object) -> bool:
    """True for the name of a concrete FHIR R4 resource type (R4B/R5-only types are not)."""
    return isinstance(name, str) and name in R4_RESOURCE_TYPES


def validate_resource(resource: object, expected_type: str | None = None, *, model_check: bool = True) -> list[Issue]:
    """Validate one FHIR R4 resource given as parsed JSON; an empty list means valid.

    ``expected_type`` is the type the caller requires (e.g. from the URL); a different
    ``resourceType`` is an ``invalid`` issue.  ``model_check=False`` skips the second pass
    through the R4B pydantic model, which costs 3-4 times the walk itself and has found
    nothing the walk accepts in Synthea data or fuzzing: for bulk loads.  Never raises.
    """
    walk = _Walk()
    try:
        if expected_type is not None and not is_known_type(expected_type):
            walk.add("not-supported", f"Unknown resource type '{expected_type}'", "")
        walk.resource(resource, "", expected_type)
        if model_check and not walk.issues and not walk.too_deep:
            _add_pydantic_issues(walk, resource)
    except Exception as exc:  # a validator that crashes must still answer
        walk.issues.append(Issue("fatal", "exception", f"Validation failed unexpectedly: {type(exc).__name__}", ()))
    return walk.issues


def warm_up() -> int:
    """Import every R4B model and build every element definition now rather than on first
    use (a few seconds, once per process); returns the number of types prepared."""
    pending: list[_TypeKey] = [_resource_key(name) for name in sorted(R4_RESOURCE_TYPES)]
    seen: set[_TypeKey] = set()
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        pending.extend(el.target for el in _type_info(key).elements.values() if el.target is not None)
    return len(seen)


# --------------------------------------------------------------------------------------
# Element definitions: one _TypeInfo per model class or table path, built once, cached.

_PRIMITIVE, _COMPLEX, _RESOURCE = 0, 1, 2

# Elements that R4 has and the R4B models lack (value[x] of type Meta was dropped in R4B).
_R4_ONLY_ELEMENTS: dict[str, dict[str, tuple[str, str]]] = {
    "Extension": {"valueMeta": ("Meta", "value")},
    "ElementDefinition": {
        "defaultValueMeta": ("Meta", "defaultValue"),
        "fixedMeta": ("Meta", "fixed"),
        "patternMeta": ("Meta", "pattern"),
    },
    "ElementDefinitionExample": {"valueMeta": ("Meta", "value")},
}
# Elements that the R4B models have and R4 does not.
_R4B_ONLY_ELEMENTS: dict[str, frozenset[str]] = {
    "Extension": frozenset({"valueCodeableReference", "valueRatioRange"}),
    "ElementDefinition": frozenset(
        {
            "defaultValueCodeableReference",
            "defaultValueRatioRange",
            "fixedCodeableReference",
            "fixedRatioRange",
            "patternCodeableReference",
            "patternRatioRange",
        }
    ),
    "ElementDefinitionExample": frozenset({"valueCodeableReference", "valueRatioRange"}),
    "ActivityDefinition": frozenset({"subjectCanonical"}),
    "PlanDefinition": frozenset({"subjectCanonical"}),
    "PlanDefinitionAction": frozenset({"subjectCanonical"}),
}
# Elements that are 1..1 in R4 but 0..1 in R4B.
_R4_REQUIRED_ELEMENTS: dict[str, frozenset[str]] = {
    "MarketingStatus": frozenset({"country", "dateRange"}),
}

_TypeKey = type[FHIRAbstractModel] | str  # a model class, or a TABLE_TYPES path


@dataclass(frozen=True, slots=True)
class _Binding:
    """An R4 required binding: the allowed codes, and (system, code) pairs for Codings."""

    name: str
    codes: frozenset[str]
    pairs: frozenset[tuple[str, str]]

    def describe(self) -> str:
        listed = sorted(self.codes)
        shown = ", ".join(listed[:25]) + (", ..." if len(listed) > 25 else "")
        return f"value set '{self.name}' ({shown})"


@dataclass(frozen=True, slots=True)
class _Element:
    name: str
    kind: int
    type_name: str  # FHIR type code of a primitive, else the type's name (for messages)
    target: _TypeKey | None  # complex types: where to find their definition
    is_list: bool
    required: bool  # for a choice member: the choice group is required
    choice: str | None
    binding: _Binding | None
    suppress_model: bool  # R4 accepts what the R4B pydantic model rejects here


@dataclass(slots=True)
class _TypeInfo:
    name: str
    elements: dict[str, _Element]
    required: tuple[str, ...]  # required non-choice elements
    choices: dict[str, tuple[bool, tuple[str, ...]]]  # prefix -> (required, members)
    is_resource: bool
    from_table: bool


@functools.cache
def _binding(name: str | None) -> _Binding | None:
    if name is None or name not in VALUE_SETS:
        return None
    pairs = frozenset((system, code) for system, codes in VALUE_SETS[name] for code in codes.split())
    return _Binding(name, frozenset(code for _, code in pairs), pairs)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip Optional/List from a model annotation; tell whether a List was found."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, is_list
            annotation = args[0]
        elif origin is list:
            is_list = True
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation, is_list


def _classify(annotation: Any) -> tuple[int, str, _TypeKey | None]:
    """(kind, type name, target) of an unwrapped model annotation."""
    if annotation is bool:
        return _PRIMITIVE, "boolean", None
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        for item in metadata:
            visit_name = getattr(item, "__visit_name__", None)
            if isinstance(visit_name, str):
                return _PRIMITIVE, visit_name, None
        if base is uuid.UUID:
            return _PRIMITIVE, "uuid", None
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        klass = annotation.get_model_klass()
        if issubclass(annotation, FhirElementOrResourceBase) and klass.__name__ == "Resource":
            return _RESOURCE, "Resource", None
        return _COMPLEX, klass.__name__, klass
    # Not expected from the generated models; validate as a plain string rather than fail.
    return _PRIMITIVE, "string", None


def _model_elements(cls: type[FHIRAbstractModel]) -> list[_Element]:
    name = cls.__name__
    dropped = _R4B_ONLY_ELEMENTS.get(name, frozenset())
    required_in_r4 = _R4_REQUIRED_ELEMENTS.get(name, frozenset())
    out = []
    for field_name, info in cls.model_fields.items():
        alias = info.alias or field_name
        if field_name == "fhir_comments" or field_name.endswith("__ext") or alias in dropped:
            continue
        kind, type_name, target = _classify(_unwrap(info.annotation)[0])
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        choice = extra.get("one_of_many")
        required = bool(
            info.is_required()
            or extra.get("element_required")
            or (choice and extra.get("one_of_many_required"))
            or alias in required_in_r4
        )
        out.append(
            _Element(
                name=alias,
                kind=kind,
                type_name=type_name,
                target=target,
                is_list=_unwrap(info.annotation)[1],
                required=required,
                choice=choice if isinstance(choice, str) else None,
                binding=_binding(MODEL_BINDINGS.get(f"{name}.{alias}")),
                # The R4B model checks uuid as UUID version 4 only; R4 takes any UUID.
                suppress_model=type_name == "uuid",
            )
        )
    for alias, (type_name, choice) in _R4_ONLY_ELEMENTS.get(name, {}).items():
        target = get_fhir_model_class(type_name)
        out.append(_Element(alias, _COMPLEX, type_name, target, False, False, choice, None, True))
    return out


def _table_elements(path: str) -> list[_Element]:
    out = []
    for name, (type_name, is_list, required, choice, vs) in TABLE_TYPES[path].items():
        target: _TypeKey | None = None
        if type_name in _PRIMITIVE_CHECKS:
            kind = _PRIMITIVE
        elif type_name == "Resource":
            kind = _RESOURCE
        else:
            kind = _COMPLEX
            target = type_name if type_name in TABLE_TYPES else get_fhir_model_class(type_name)
        label = type_name.rsplit(".", 1)[-1]
        out.append(_Element(name, kind, label, target, is_list, required, choice, _binding(vs), False))
    return out


_TYPE_INFOS: dict[_TypeKey, _TypeInfo] = {}


def _type_info(key: _TypeKey) -> _TypeInfo:
    """The cached element definitions of a model class or a TABLE_TYPES path."""
    info = _TYPE_INFOS.get(key)
    if info is not None:
        return info
    if isinstance(key, str):
        name, elements, from_table = key, _table_elements(key), True
        is_resource = key in R4_RESOURCE_TYPES
    else:
        name, elements, from_table = key.__name__, _model_elements(key), False
        is_resource = key.has_resource_base()
    choices: dict[str, tuple[bool, tuple[str, ...]]] = {}
    for el in elements:
        if el.choice:
            required, members = choices.get(el.choice, (False, ()))
            choices[el.choice] = (required or el.required, (*members, el.name))
    info = _TypeInfo(
        name=name,
        elements={el.name: el for el in elements},
        required=tuple(el.name for el in elements if el.required and not el.choice),
        choices=choices,
        is_resource=is_resource,
        from_table=from_table,
    )
    _TYPE_INFOS[key] = info
    return info


def _resource_key(resource_type: str) -> _TypeKey:
    if resource_type in TABLE_TYPES:
        return resource_type
    return get_fhir_model_class(resource_type)


@functools.cache
def _element_type_info() -> _TypeInfo:
    """Definitions of the ``_element`` object that carries a primitive's id/extensions."""
    return _type_info(get_fhir_model_class("Element"))


# --------------------------------------------------------------------------------------
# Primitive values.  Each check returns an error message, or None when the value is valid.

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH, _DAY = r"(0[1-9]|1[0-2])", r"(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
# Regexes of the R4 specification (datatypes.html), anchored by fullmatch().
_DATE_RE = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY})?)?", re.ASCII)
_DATETIME_RE = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY}(T{_TIME}{_ZONE})?)?)?", re.ASCII)
_INSTANT_RE = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}", re.ASCII)
_TIME_RE = re.compile(_TIME, re.ASCII)
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII)
_CODE_RE = re.compile(r"[^\s]+(\s[^\s]+)*", re.ASCII)
_URI_RE = re.compile(r"\S+", re.ASCII)
_OID_RE = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+", re.ASCII)
_UUID_RE = re.compile(r"urn:uuid:[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.ASCII)
# The R4 regex for base64Binary omits '/', an erratum: use the RFC 4648 alphabet.  A plain
# character class (plus a length check) keeps multi-megabyte attachments fast to check.
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII)
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}", re.ASCII)

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# "Strings SHALL NOT exceed 1,048,576 characters": string and its specialisations only;
# base64Binary (Binary.data, Attachment.data) and xhtml have no such limit.
_MAX_STRING = 1024 * 1024
_JSON_NAMES = {str: "a string", bool: "a boolean", int: "a number", float: "a number", type(None): "null"}


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return _JSON_NAMES.get(type(value), type(value).__name__)


class _WrongJsonType(str):
    """An error message saying the JSON type itself is wrong (an issue of code 'structure')."""


def _check_boolean(value: object) -> str | None:
    if type(value) is bool:
        return None
    return _WrongJsonType(f"must be a JSON boolean, not {_json_kind(value)}")


def _integer_check(low: int) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if type(value) is not int:
            return _WrongJsonType(f"must be a JSON integer, not {_json_kind(value)}")
        if not low <= value <= _INT32_MAX:
            return f"integer {value} is outside {low}..{_INT32_MAX}"
        return None

    return check


def _check_decimal(value: object) -> str | None:
    if type(value) in (int, float) or isinstance(value, decimal.Decimal):
        if value != value or value in (float("inf"), float("-inf")):  # type: ignore[operator]
            return "must be a finite number"
        return None
    return _WrongJsonType(f"must be a JSON number, not {_json_kind(value)}")


def _string_check(
    regex: re.Pattern[str] | None = None, what: str = "", max_length: int | None = None
) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if type(value) is not str:
            return _WrongJsonType(f"must be a JSON string, not {_json_kind(value)}")
        if not value:
            return "must not be an empty string"
        if max_length is not None and len(value) > max_length:
            return f"is longer than {max_length:,} characters"
        if regex is not None and not regex.fullmatch(value):
            return f"'{_clip(value)}' is not a valid {what}"
        return None

    return check


def _date_parts_valid(value: str) -> bool:
    """The regexes accept 31 days in every month; check the calendar."""
    if len(value) < 10 or value[7] != "-":
        return True
    try:
        datetime.date(int(value[:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


def _date_check(regex: re.Pattern[str], what: str) -> Callable[[object], str | None]:
    base = _string_check(regex, what)

    def check(value: object) -> str | None:
        error = base(value)
        if error is None and not _date_parts_valid(typing.cast(str, value)):
            return f"'{value}' is not a valid {what} (no such day)"
        return error

    return check


def _check_base64(value: object) -> str | None:
    error = _string_check()(value)
    if error is not None:
        return error
    compact = "".join(typing.cast(str, value).split())  # base64 may be wrapped
    if len(compact) % 4 or not _BASE64_RE.fullmatch(compact):
        return "is not valid base64"
    return None


# Elements allowed in R4 narrative (txt-1: basic HTML 4.0 formatting, a, img, style).
_XHTML_NS = "{http://www.w3.org/1999/xhtml}"
_XHTML_TAGS = frozenset(
    "a abbr acronym b big blockquote br caption cite code col colgroup dd dfn div dl dt em "
    "h1 h2 h3 h4 h5 h6 hr i img li ol p pre q samp small span strong sub sup table tbody td "
    "tfoot th thead tr tt ul var".split()
)
_ENTITY_RE = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})


def _replace_html_entity(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in _XML_ENTITIES:
        return match.group(0)
    return html.entities.html5.get(name + ";", match.group(0))


def _check_xhtml(value: object) -> str | None:
    """Narrative.div: well-formed XHTML <div>, only txt-1 elements, no scripts (txt-1/2)."""
    error = _string_check()(value)
    if error is not None:
        return error
    text = typing.cast(str, value)
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return "narrative must not contain a DTD or entity declarations"
    try:
        root = ElementTree.fromstring(_ENTITY_RE.sub(_replace_html_entity, text))
    except ElementTree.ParseError as exc:
        return f"narrative is not well-formed XHTML: {exc}"
    if root.tag != _XHTML_NS + "div":
        return "narrative must be a <div> in the XHTML namespace"
    for node in root.iter():
        if not isinstance(node.tag, str) or not node.tag.startswith(_XHTML_NS):
            return f"narrative contains a non-XHTML element {node.tag!r}"
        tag = node.tag[len(_XHTML_NS) :]
        if tag not in _XHTML_TAGS:
            return f"narrative contains a forbidden element <{tag}> (txt-1)"
        for attribute, attribute_value in node.attrib.items():
            if attribute.lower().startswith("on"):
                return f"narrative contains an event handler attribute '{attribute}' (txt-1)"
            if attribute in ("href", "src") and attribute_value.strip().lower().startswith(
                ("javascript:", "vbscript:")
            ):
                return "narrative contains a script link (txt-1)"
    has_text = any(text.strip() for text in root.itertext())
    if not has_text and root.find(f".//{_XHTML_NS}img") is None:
        return "narrative must have some non-whitespace content (txt-2)"
    return None


_PRIMITIVE_CHECKS: dict[str, Callable[[object], str | None]] = {
    "boolean": _check_boolean,
    "integer": _integer_check(_INT32_MIN),
    "unsignedInt": _integer_check(0),
    "positiveInt": _integer_check(1),
    "decimal": _check_decimal,
    "string": _string_check(max_length=_MAX_STRING),
    "markdown": _string_check(max_length=_MAX_STRING),
    "code": _string_check(_CODE_RE, "code", _MAX_STRING),
    "id": _string_check(_ID_RE, "id ([A-Za-z0-9-.]{1,64})"),
    "uri": _string_check(_URI_RE, "uri"),
    "url": _string_check(_URI_RE, "url"),
    "canonical": _string_check(_URI_RE, "canonical"),
    "oid": _string_check(_OID_RE, "oid (urn:oid:...)"),
    "uuid": _string_check(_UUID_RE, "uuid (urn:uuid:...)"),
    "base64Binary": _check_base64,
    "date": _date_check(_DATE_RE, "date"),
    "dateTime": _date_check(_DATETIME_RE, "dateTime"),
    "instant": _date_check(_INSTANT_RE, "instant"),
    "time": _string_check(_TIME_RE, "time"),
    "xhtml": _check_xhtml,
}


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------
# The walk.

_MISSING: Any = object()
_MAX_DEPTH = 100  # nested objects; far beyond real resources, well within Python's stack


@dataclass(slots=True)
class _Walk:
    issues: list[Issue] = field(default_factory=list)
    # FHIRPaths under which the R4B pydantic model is known to disagree with R4.
    suppressed: list[str] = field(default_factory=list)
    depth: int = 0
    too_deep: bool = False

    def add(self, code: str, diagnostics: str, path: str) -> None:
        self.issues.append(Issue("error", code, diagnostics, (path,) if path else ()))

    # ---- resources ----

    def resource(self, value: object, path: str, expected: str | None = None, contained: bool = False) -> None:
        """A resource at ``path`` ("" for the top level, where its type names the path)."""
        if not isinstance(value, dict):
            self.add("structure", f"A resource must be a JSON object, not {_json_kind(value)}", path)
            return
        resource_type = value.get("resourceType", _MISSING)
        if resource_type is _MISSING:
            self.add("structure", "The resourceType property is missing", path)
            return
        if not isinstance(resource_type, str):
            self.add("structure", "resourceType must be a string", path)
            return
        if resource_type not in R4_RESOURCE_TYPES:
            self.add("not-supported", _unknown_type_message(resource_type), path)
            return
        if expected is not None and resource_type != expected:
            self.add(
                "invalid",
                f"resourceType '{resource_type}' does not match the expected type '{expected}'",
                path or resource_type,
            )
        path = path or resource_type
        info = _type_info(_resource_key(resource_type))
        if info.from_table and path != resource_type:
            self.suppressed.append(path)
        self.object(value, info, path)
        if contained:
            self._contained_rules(value, path)

    def _contained_rules(self, value: dict[str, Any], path: str) -> None:
        """R4 DomainResource invariants that apply to contained resources."""
        if "contained" in value:
            self.add("invariant", "A contained resource must not contain resources (dom-2)", path)
        meta = value.get("meta")
        if isinstance(meta, dict):
            if "versionId" in meta or "lastUpdated" in meta:
                self.add(
                    "invariant",
                    "A contained resource must not have meta.versionId or meta.lastUpdated (dom-4)",
                    f"{path}.meta",
                )
            if "security" in meta:
                self.add(
                    "invariant",
                    "A contained resource must not have security labels (dom-5)",
                    f"{path}.meta.security",
                )

    # ---- objects ----

    def object(self, value: object, info: _TypeInfo, path: str) -> None:
        """A JSON object of FHIR type ``info`` at ``path``."""
        if not isinstance(value, dict):
            self.add("structure", f"Expected a JSON object ({info.name}), not {_json_kind(value)}", path)
            return
        if not value:
            self.add("structure", "Empty objects are not allowed in FHIR JSON", path)
            return
        if self.depth >= _MAX_DEPTH:
            self.too_deep = True
            self.add("too-costly", f"Content nested deeper than {_MAX_DEPTH} levels", path)
            return
        self.depth += 1
        try:
            present = self._members(value, info, path)
            self._cardinality(info, present, path)
            if info.name == "Extension":
                self._extension_rules(value, present, path)
        finally:
            self.depth -= 1

    def _members(self, value: dict[Any, Any], info: _TypeInfo, path: str) -> set[str]:
        """Check every property; return the names of the elements present."""
        present: set[str] = set()
        elements = info.elements
        for key in value:
            if not isinstance(key, str):
                self.add("structure", f"Property names must be strings, not {_clip(repr(key))}", path)
                continue
            if key == "resourceType" and info.is_resource:
                continue
            name = key[1:] if key.startswith("_") else key
            element = elements.get(name)
            if element is None or (name != key and element.kind != _PRIMITIVE):
                self._unknown(key, element, info, path)
                continue
            if name in present:
                continue  # the other half of a primitive's value/_value pair
            present.add(name)
            sub = f"{path}.{name}"
            if element.suppress_model:
                self.suppressed.append(sub)
            if element.kind == _PRIMITIVE:
                self._primitive_pair(element, value.get(name, _MISSING), value.get("_" + name, _MISSING), sub)
            else:
                self._complex(element, value[key], sub)
        return present

    def _unknown(self, key: str, element: _Element | None, info: _TypeInfo, path: str) -> None:
        if element is not None:
            message = f"'{key}' is not allowed: '{key[1:]}' is not a primitive element"
        elif key == "resourceType":
            message = f"resourceType is not allowed in {info.name}"
        else:
            message = f"Unknown element '{_clip(key)}'"
        name = key.lstrip("_")
        # Keep expressions valid FHIRPath: a key that is no element name stays on its parent.
        self.add("structure", message, f"{path}.{name}" if _NAME_RE.fullmatch(name) else path)

    def _cardinality(self, info: _TypeInfo, present: set[str], path: str) -> None:
        for name in info.required:
            if name not in present:
                self.add("required", f"Missing required element '{name}'", f"{path}.{name}")
        for prefix, (required, members) in info.choices.items():
            found = [name for name in members if name in present]
            if len(found) > 1:
                self.add(
                    "structure",
                    f"Only one of {', '.join(found)} is allowed ({prefix}[x] is a single choice)",
                    f"{path}.{prefix}",
                )
            elif required and not found:
                self.add("required", f"Missing required element '{prefix}[x]'", f"{path}.{prefix}")

    def _extension_rules(self, value: dict[str, Any], present: set[str], path: str) -> None:
        # Any value* key counts, even an unknown one already reported, to avoid a second issue.
        has_value = any(isinstance(k, str) and k.lstrip("_").startswith("value") for k in value)
        if has_value == ("extension" in present):
            self.add(
                "invariant",
                "An extension must have either extensions or a value[x], not both (ext-1)",
                path,
            )

    # ---- complex elements and resources ----

    def _complex(self, element: _Element, value: object, path: str) -> None:
        if element.is_list:
            if not isinstance(value, list):
                self.add("structure", f"'{element.name}' must be a JSON array, not {_json_kind(value)}", path)
                return
            if not value:
                self.add("structure", "Empty arrays are not allowed in FHIR JSON", path)
                return
            for index, item in enumerate(value):
                self._complex_item(element, item, f"{path}[{index}]")
        elif isinstance(value, list):
            self.add("structure", f"'{element.name}' is a single element: it must not be an array", path)
        else:
            self._complex_item(element, value, path)

    def _complex_item(self, element: _Element, value: object, path: str) -> None:
        if value is None:
            self.add("structure", "null is not allowed here", path)
        elif element.kind == _RESOURCE:
            self.resource(value, path, contained=element.name == "contained")
        else:
            self.object(value, _type_info(element.target), path)  # type: ignore[arg-type]
            if element.binding is not None and isinstance(value, dict):
                self._coded_binding(element.binding, element.type_name, value, path)

    def _coded_binding(self, binding: _Binding, type_name: str, value: dict[str, Any], path: str) -> None:
        """Required binding on a Coding or CodeableConcept: one coding must be in the set."""
        codings = [value] if type_name == "Coding" else value.get("coding")
        if not isinstance(codings, list):
            codings = []
        for coding in codings:
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str) and (system, code) in binding.pairs:
                return
        self.add("code-invalid", f"No coding from the required {binding.describe()}", path)

    # ---- primitives ----

    def _primitive_pair(self, element: _Element, value: object, extra: object, path: str) -> None:
        """A primitive element: its JSON value and/or its ``_name`` sibling."""
        if not element.is_list:
            if value is not _MISSING:
                self._single_primitive(element, value, path)
            if extra is not _MISSING:
                self._element_extra(extra, path, has_value=value is not _MISSING and value is not None)
            return
        values = self._primitive_array(element.name, value, path)
        extras = self._primitive_array("_" + element.name, extra, path)
        if values is not None and extras is not None and len(values) != len(extras):
            self.add(
                "structure",
                f"'{element.name}' and '_{element.name}' must have the same number of items",
                path,
            )
            return
        for index in range(max(len(values or ()), len(extras or ()))):
            item = values[index] if values else None
            item_extra = extras[index] if extras else None
            item_path = f"{path}[{index}]"
            if item is None and item_extra is None:
                self.add("structure", "null is not allowed here", item_path)
                continue
            if item is not None:
                self._primitive_value(element, item, item_path)
            if item_extra is not None:
                self._element_extra(item_extra, item_path, has_value=item is not None)

    def _primitive_array(self, key: str, value: object, path: str) -> list[Any] | None:
        if value is _MISSING:
            return None
        if not isinstance(value, list):
            self.add("structure", f"'{key}' must be a JSON array, not {_json_kind(value)}", path)
            return None
        if not value:
            self.add("structure", "Empty arrays are not allowed in FHIR JSON", path)
            return None
        return value

    def _single_primitive(self, element: _Element, value: object, path: str) -> None:
        if value is None:
            self.add("structure", "null is not allowed here", path)
        elif isinstance(value, list):
            self.add("structure", f"'{element.name}' is a single element: it must not be an array", path)
        else:
            self._primitive_value(element, value, path)

    def _primitive_value(self, element: _Element, value: object, path: str) -> None:
        error = _PRIMITIVE_CHECKS[element.type_name](value)
        if error is not None:
            code = "structure" if isinstance(error, _WrongJsonType) else "value"
            self.add(code, f"Invalid {element.type_name}: {error}", path)
        elif element.binding is not None and value not in element.binding.codes:
            self.add(
                "code-invalid",
                f"'{_clip(str(value))}' is not in the required {element.binding.describe()}",
                path,
            )

    def _element_extra(self, value: object, path: str, has_value: bool) -> None:
        """A primitive's ``_name`` object (id and extensions), checked as an Element."""
        if isinstance(value, list):
            self.add("structure", "This '_' property is a single element: it must not be an array", path)
            return
        self.object(value, _element_type_info(), path)
        if not has_value and isinstance(value, dict) and value and "extension" not in value:
            self.add(
                "structure",
                "A primitive element without a value must have extensions (ele-1)",
                path,
            )


def _unknown_type_message(resource_type: str) -> str:
    try:
        get_fhir_model_class(resource_type)
    except ValueError:
        return f"Unknown resource type '{_clip(resource_type)}'"
    return f"'{resource_type}' is not a FHIR R4 resource type (it exists only in later versions)"


# --------------------------------------------------------------------------------------
# Pass 2: the R4B pydantic model.


def _add_pydantic_issues(walk: _Walk, resource: object) -> None:
    """Run the R4B model on a resource the walk accepted; add what it still refuses."""
    if not isinstance(resource, dict):
        return
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type in TYPES_WITHOUT_R4B_MODEL:
        return
    try:
        get_fhir_model_class(resource_type).model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
    except Exception:
        # e.g. KeyError for a nested R4-only resource: the walk validated that content.
        return
    else:
        return
    for error in errors:
        path = _loc_to_fhirpath(resource_type, error.get("loc", ()))
        if not _is_under(path, walk.suppressed):
            walk.add(_pydantic_code(error), f"R4B model: {error.get('msg', 'invalid')}", path)


_LOC_NAME_RE = re.compile(r"_?[A-Za-z][A-Za-z0-9]*")


def _loc_to_fhirpath(root: str, loc: Iterable[int | str]) -> str:
    """('name', 0, '_given', 1) -> 'Patient.name[0].given[1]'."""
    parts = [root]
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif _LOC_NAME_RE.fullmatch(item) and item != "root":
            parts.append("." + item.lstrip("_"))
        # other items are pydantic's union/validator tags, not FHIR elements
    return "".join(parts)


def _pydantic_code(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    message = str(error.get("msg", ""))
    if kind == "extra_forbidden" or "but got multiple" in message:
        return "structure"
    if kind in ("missing", "model_field_validation.missing") or "Expect any of field" in message:
        return "required"
    if kind in ("list_type", "dict_type", "model_type", "model_attributes_type"):
        return "structure"
    return "value"


def _is_under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == prefix or path.startswith((prefix + ".", prefix + "[")) for prefix in prefixes)
