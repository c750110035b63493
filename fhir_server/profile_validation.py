"""Validation against our profiles: snapshot-free, over the differential of each StructureDefinition.

A resource that claims one of our profiles in `meta.profile` (a StructureDefinition loaded by conformance.py) is
checked against that profile's differential and those of its ancestors that are ours (the core R4 base is
already checked by validation.py). Claims of profiles we do not hold (FR Core, ...) are accepted unchecked.
Wherever they appear, extensions whose URL is one of our extension definitions are checked against it, claimed or
not.

What an element definition may say, and is checked (per parent instance, as FHIR cardinality is):
- `min` / `max`, at any depth (`Task.owner`, `DocumentReference.context.related`, inside slices);
- `fixed[x]` (exact) and `pattern[x]` (the instance contains the pattern), primitives and complex types;
- `binding` to a ValueSet we hold: `required` -> error, `extensible` -> warning (code, Coding, CodeableConcept,
  Quantity); bindings to value sets we do not hold are not checked;
- `type`: the allowed types of a choice element (`value[x]`), and for References the target types named by
  `targetProfile` (the target's type, from the reference string; its conformance to that profile is not
  fetched); a datatype `profile` we hold is applied to the value;
- slicing with `value`/`pattern` discriminators on any child path (`system`, `url`, `attachment.contentType`,
  `$this`); extension slices are found by URL (from the slice's `type.profile`, its `url` fixedUri, or, for the
  sub-extensions of a complex extension defined elsewhere, the slice name); `rules: closed` refuses the rest.
Not checked: invariants (`constraint`), `maxLength`, `mustSupport`, `exists`/`type`/`profile` discriminators,
re-slicing, the conformance of referenced resources.

Issues carry FHIRPath `expression`s into the instance (`Task.owner`, `Patient.identifier[1].system`,
`Task.extension[0].value`). None of them uses the codes `structure`/`not-supported`, so writes answer 422.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.conformance import CORE_SD_PREFIX, Conformance, expand, registry, split_canonical
from fhir_server.questionnaire_validation import questionnaire_issues
from fhir_server.validation import Issue

PRIMITIVES = frozenset(
    "base64Binary boolean canonical code date dateTime decimal id instant integer markdown oid positiveInt string "
    "time unsignedInt uri url uuid xhtml".split()
)
_ABSTRACT_TYPES = frozenset({"Resource", "DomainResource", "Element", "BackboneElement", "Base"})
_REFERENCE_RE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


@dataclass
class Node:
    """One element of a differential, with its children by name and its slices by slice name."""

    id: str
    definition: dict[str, Any] = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)
    slices: dict[str, Node] = field(default_factory=dict)

    def child(self, name: str) -> Node:
        if name not in self.children:
            self.children[name] = Node(f"{self.id}.{name}")
        return self.children[name]

    def slice(self, name: str) -> Node:
        if name not in self.slices:
            self.slices[name] = Node(f"{self.id}:{name}")
        return self.slices[name]


def _tree(sd: dict[str, Any]) -> Node:
    """The differential of `sd` as a tree (intermediate elements a differential leaves out are implied)."""
    root = Node(sd["type"])
    for element in (sd.get("differential") or {}).get("element") or []:
        segments = element.get("id", element.get("path", "")).split(".")
        node = root
        for segment in segments[1:]:
            name, _, slice_name = segment.partition(":")
            node = node.child(name)
            if slice_name:
                node = node.slice(slice_name)
        node.definition = element
    return root


class _Trees:
    """Differential trees per StructureDefinition, built on first use and kept with the registry (which does
    not change once loaded)."""

    def get(self, conformance: Conformance, sd: dict[str, Any]) -> Node:
        key = f"tree:{sd['url']}|{sd.get('version', '')}"
        memo = conformance._memo
        if key not in memo:
            memo[key] = _tree(sd)
        return memo[key]


_TREES = _Trees()


# ---- the walk -------------------------------------------------------------------------------------------------


def _first_key(definition: dict[str, Any], prefix: str) -> tuple[str, Any] | None:
    for key, value in definition.items():
        if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper():
            return key, value
    return None


def _type_name(suffix: str) -> str:
    lowered = suffix[0].lower() + suffix[1:]
    return lowered if lowered in PRIMITIVES else suffix


def matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern semantics: every element of the pattern is in the value; arrays match element-wise."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(k in value and matches_pattern(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return False
        return all(any(matches_pattern(v, p) for v in value) for p in pattern)
    return value == pattern


def _compact(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 160 else text[:157] + "..."


@dataclass
class _Value:
    value: Any
    path: str  # FHIRPath into the instance
    type: str | None = None  # the choice type for value[x] elements


class ProfileValidator:
    """Checks one resource; collects Issues."""

    def __init__(self, conformance: Conformance, resource: dict[str, Any]) -> None:
        self.conformance = conformance
        self.resource = resource
        self.issues: list[Issue] = []
        self._contained = {
            c.get("id"): c.get("resourceType") for c in resource.get("contained") or [] if isinstance(c, dict)
        }

    def add(self, severity: str, code: str, message: str, expression: str) -> None:
        self.issues.append(Issue(severity, code, message, (expression,) if expression else ()))

    # -- entry points ------------------------------------------------------------------------------------------

    def check_profile(self, canonical: str, *, explicit: bool = False) -> None:
        """Validate the resource against one profile canonical (our own; others are reported or ignored)."""
        rtype = self.resource.get("resourceType", "")
        sd = self.conformance.structure_definition(canonical)
        if sd is None:
            if explicit:
                self.add("error", "not-found", f"profile {canonical} is not known to this server", rtype)
            else:
                self.add("information", "informational", f"profile {canonical} is not known here: not checked", "")
            return
        if sd.get("kind") != "resource" or sd.get("type") != rtype:
            self.add(
                "error",
                "invalid",
                f"profile {sd['url']} constrains {sd.get('type')}, not {rtype}",
                f"{rtype}.meta.profile" if not explicit else rtype,
            )
            return
        for definition in self._lineage(sd):
            tree = _TREES.get(self.conformance, definition)
            self._element(tree, [_Value(self.resource, rtype)], definition["url"], rtype)

    def check_our_extensions(self) -> None:
        """Every extension with one of our extension URLs, anywhere, against its definition."""
        urls = self.conformance.extension_urls()
        if urls:
            rtype = self.resource.get("resourceType", "")
            self._find_extensions(self.resource, rtype, rtype, urls)

    # -- profiles ----------------------------------------------------------------------------------------------

    def _lineage(self, sd: dict[str, Any]) -> list[dict[str, Any]]:
        """The profile and its ancestors that we hold, most general first."""
        chain = [sd]
        base = sd.get("baseDefinition")
        while base and not base.startswith(CORE_SD_PREFIX) and len(chain) < 20:
            parent = self.conformance.structure_definition(base)
            if parent is None:
                self.add("information", "informational", f"base profile {base} is not known here: not checked", "")
                break
            chain.append(parent)
            base = parent.get("baseDefinition")
        return chain[::-1]

    def _element(self, node: Node, values: list[_Value], source: str, element_path: str) -> None:
        """Apply `node`'s own constraints to `values`, then its children to each value."""
        for v in values:
            self._constraints(node.definition, v, source)
        for v in values:
            if isinstance(v.value, dict):
                self._children(node, v, source, element_path)

    def _children(self, node: Node, parent: _Value, source: str, element_path: str) -> None:
        for name, child in node.children.items():
            values = self._values(parent, name)
            child_path = f"{element_path}.{name}"
            self._cardinality(child.definition, values, parent, name, source, None)
            self._element(child, values, source, child_path)
            if child.slices:
                self._slices(child, values, parent, name, source, child_path)

    def _values(self, parent: _Value, name: str) -> list[_Value]:
        obj = parent.value
        if name.endswith("[x]"):
            prefix = name[:-3]
            out = []
            for key, value in obj.items():
                if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper():
                    out.append(_Value(value, f"{parent.path}.{prefix}", _type_name(key[len(prefix) :])))
            return out
        value = obj.get(name)
        if value is None:
            return []
        if isinstance(value, list):
            return [_Value(item, f"{parent.path}.{name}[{i}]") for i, item in enumerate(value)]
        return [_Value(value, f"{parent.path}.{name}")]

    def _cardinality(
        self,
        definition: dict[str, Any],
        values: list[_Value],
        parent: _Value,
        name: str,
        source: str,
        slice_name: str | None,
    ) -> None:
        where = f"{parent.path}.{name.removesuffix('[x]')}"
        what = f"{name} (slice {slice_name})" if slice_name else name
        minimum = definition.get("min")
        if isinstance(minimum, int) and len(values) < minimum:
            self.add(
                "error",
                "required",
                f"{where}: {what} is required at least {minimum} time(s), found {len(values)} (profile {source})",
                where,
            )
        maximum = definition.get("max")
        if maximum not in (None, "*") and len(values) > int(maximum):
            if maximum == "0":
                message = f"{where}: {what} is not allowed here (profile {source})"
            else:
                message = f"{where}: {what} is allowed at most {maximum} time(s), found {len(values)}"
                message += f" (profile {source})"
            self.add("error", "invalid", message, values[int(maximum)].path if values else where)

    def _constraints(self, definition: dict[str, Any], v: _Value, source: str) -> None:
        if not definition:
            return
        types = definition.get("type") or []
        if v.type is not None and types and v.type not in {t.get("code") for t in types}:
            allowed = ", ".join(t.get("code", "?") for t in types)
            self.add(
                "error", "invalid", f"{v.path}: type {v.type} is not allowed here, only {allowed} (profile {source})",
                v.path,
            )  # fmt: skip
            return
        fixed = _first_key(definition, "fixed")
        if fixed is not None and v.value != fixed[1]:
            self.add(
                "error", "value", f"{v.path}: must be exactly {_compact(fixed[1])}, found {_compact(v.value)} "
                f"(profile {source})", v.path,
            )  # fmt: skip
        pattern = _first_key(definition, "pattern")
        if pattern is not None and not matches_pattern(v.value, pattern[1]):
            self.add(
                "error", "value", f"{v.path}: must match the pattern {_compact(pattern[1])}, found "
                f"{_compact(v.value)} (profile {source})", v.path,
            )  # fmt: skip
        binding = definition.get("binding")
        if binding and binding.get("valueSet") and binding.get("strength") in ("required", "extensible"):
            self._binding(binding, v, source)
        for t in types:
            if t.get("code") == "Reference" and t.get("targetProfile") and isinstance(v.value, dict):
                self._reference_target(types, v, source)
                break
        for t in types:
            self._datatype_profiles(t, v)

    def _binding(self, binding: dict[str, Any], v: _Value, source: str) -> None:
        expansion = expand(self.conformance, binding["valueSet"])
        if expansion is None:
            return  # not a value set we hold
        codings = _codings(v.value)
        if codings is None:
            return
        if any(code is not None and expansion.contains(system, code) for system, code in codings):
            return
        required = binding["strength"] == "required"
        found = ", ".join(f"{s}|{c}" if s else str(c) for s, c in codings) or "no code"
        self.add(
            "error" if required else "warning",
            "code-invalid",
            f"{v.path}: {found} is not in the value set {binding['valueSet']} "
            f"({binding['strength']} binding, profile {source})",
            v.path,
        )

    def _reference_target(self, types: list[dict[str, Any]], v: _Value, source: str) -> None:
        allowed: set[str] = set()
        for t in types:
            if t.get("code") != "Reference":
                continue
            for target in t.get("targetProfile") or []:
                target_type = self._profile_type(target)
                if target_type is None:
                    return  # a profile we cannot resolve: its type is unknown, do not guess
                allowed.add(target_type)
        if not allowed or allowed & _ABSTRACT_TYPES:
            return
        actual = self._target_type(v.value)
        if actual is None or actual in allowed:
            return
        self.add(
            "error", "invalid", f"{v.path}: a reference to {actual} is not allowed here, only to "
            f"{', '.join(sorted(allowed))} (profile {source})", f"{v.path}.reference",
        )  # fmt: skip

    def _profile_type(self, canonical: str) -> str | None:
        url, _ = split_canonical(canonical)
        if url.startswith(CORE_SD_PREFIX):
            return url[len(CORE_SD_PREFIX) :]
        sd = self.conformance.structure_definition(canonical)
        return sd.get("type") if sd else None

    def _target_type(self, reference: dict[str, Any]) -> str | None:
        ref = reference.get("reference")
        if not isinstance(ref, str):
            return reference.get("type") if isinstance(reference.get("type"), str) else None
        if ref.startswith("#"):
            return self._contained.get(ref[1:])
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            return None
        if "?" in ref:  # a conditional reference (transactions): Type?criteria
            head = ref.split("?", 1)[0]
            return head if head.isalpha() else None
        m = _REFERENCE_RE.search(ref)
        return m.group(1) if m else None

    def _datatype_profiles(self, t: dict[str, Any], v: _Value) -> None:
        """A datatype profile of ours on the element (extensions are checked by URL, everywhere)."""
        if t.get("code") in ("Extension", "Reference") or not isinstance(v.value, dict):
            return
        for canonical in t.get("profile") or []:
            sd = self.conformance.structure_definition(canonical)
            if sd is None or sd.get("kind") not in ("complex-type", "primitive-type"):
                continue
            for definition in self._lineage(sd):
                tree = _TREES.get(self.conformance, definition)
                self._element(tree, [v], definition["url"], definition["type"])

    # -- slicing -----------------------------------------------------------------------------------------------

    def _slices(self, base: Node, values: list[_Value], parent: _Value, name: str, source: str, path: str) -> None:
        slicing = base.definition.get("slicing") or {}
        discriminators = slicing.get("discriminator")
        if not discriminators and name in ("extension", "modifierExtension"):
            discriminators = [{"type": "value", "path": "url"}]
        matched_any: set[int] = set()
        for slice_name, node in base.slices.items():
            discriminating = [(d["path"], self._discriminator_value(node, d, name)) for d in discriminators or []]
            if not discriminating or any(e is None for _, e in discriminating):
                continue  # a discriminator we do not support, or a slice without a value for it
            members = [i for i, v in enumerate(values) if all(_discriminated(v.value, p, e) for p, e in discriminating)]
            matched_any.update(members)
            chosen = [values[i] for i in members]
            self._cardinality(node.definition, chosen, parent, name, source, slice_name)
            self._element(node, chosen, source, path)
        if slicing.get("rules") == "closed":
            for i, v in enumerate(values):
                if i not in matched_any:
                    self.add(
                        "error",
                        "invalid",
                        f"{v.path}: does not match any slice of {name}, and the slicing is closed (profile {source})",
                        v.path,
                    )

    def _discriminator_value(self, node: Node, discriminator: dict[str, Any], name: str) -> tuple[str, Any] | None:
        """('fixed'|'pattern', value) the slice requires at the discriminator path, or None."""
        if discriminator.get("type") not in ("value", "pattern"):
            return None
        path = discriminator.get("path", "")
        if path == "url" and name in ("extension", "modifierExtension"):
            url_node = node.children.get("url")
            fixed = _first_key(url_node.definition, "fixed") if url_node else None
            if fixed is not None:
                return "fixed", fixed[1]
            for t in node.definition.get("type") or []:
                if t.get("profile"):
                    return "fixed", split_canonical(t["profile"][0])[0]
            return "fixed", node.id.rsplit(":", 1)[-1]  # a sub-extension of a complex extension: url = slice name
        target: Node | None = node
        if path != "$this":
            for segment in path.split("."):
                target = target.children.get(segment) if target else None
        if target is None:
            return None
        fixed = _first_key(target.definition, "fixed")
        if fixed is not None:
            return "fixed", fixed[1]
        pattern = _first_key(target.definition, "pattern")
        if pattern is not None:
            return "pattern", pattern[1]
        return None

    # -- extensions --------------------------------------------------------------------------------------------

    def _find_extensions(self, obj: Any, path: str, element_path: str, urls: frozenset[str]) -> None:
        if isinstance(obj, list):
            for i, item in enumerate(obj):
                self._find_extensions(item, f"{path}[{i}]", element_path, urls)
            return
        if not isinstance(obj, dict):
            return
        for key, value in obj.items():
            if key in ("extension", "modifierExtension") and isinstance(value, list):
                for i, ext in enumerate(value):
                    if isinstance(ext, dict) and ext.get("url") in urls:
                        self._extension(ext, f"{path}.{key}[{i}]", element_path)
            if isinstance(value, dict | list) and not key.startswith("_"):
                if key == "contained" and isinstance(value, list):
                    for i, item in enumerate(value):
                        kind = item.get("resourceType", "") if isinstance(item, dict) else ""
                        self._find_extensions(item, f"{path}.contained[{i}]", kind, urls)
                    continue
                self._find_extensions(value, f"{path}.{key}", f"{element_path}.{key}", urls)

    def _extension(self, ext: dict[str, Any], path: str, element_path: str) -> None:
        sd = self.conformance.structure_definition(ext["url"])
        assert sd is not None
        contexts = [c.get("expression") for c in sd.get("context") or [] if c.get("type") == "element"]
        if contexts and not any(c in _ABSTRACT_TYPES or c == element_path for c in contexts):
            self.add(
                "error", "invalid", f"{path}: extension {sd['url']} is not allowed on {element_path}, only on "
                f"{', '.join(contexts)}", path,
            )  # fmt: skip
        for definition in self._lineage(sd):
            tree = _TREES.get(self.conformance, definition)
            self._element(tree, [_Value(ext, path)], definition["url"], "Extension")


def _codings(value: Any) -> list[tuple[str | None, str | None]] | None:
    """The (system, code) pairs a coded value carries; None if it is not a coded value."""
    if isinstance(value, str):
        return [(None, value)]
    if not isinstance(value, dict):
        return None
    if "coding" in value or ("text" in value and "code" not in value):
        return [(c.get("system"), c.get("code")) for c in value.get("coding") or [] if isinstance(c, dict)]
    if "code" in value or "system" in value:
        return [(value.get("system"), value.get("code"))]
    return None


def _discriminated(value: Any, path: str, expected: tuple[str, Any]) -> bool:
    kind, wanted = expected
    candidates = [value]
    if path != "$this":
        for segment in path.split("."):
            nxt: list[Any] = []
            for c in candidates:
                if isinstance(c, dict) and segment in c:
                    item = c[segment]
                    nxt.extend(item if isinstance(item, list) else [item])
            candidates = nxt
    if kind == "fixed":
        return any(c == wanted for c in candidates)
    return any(matches_pattern(c, wanted) for c in candidates)


def claimed_profiles(resource: dict[str, Any]) -> list[str]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return [p for p in profiles or [] if isinstance(p, str)]


def profile_issues(
    resource: dict[str, Any], extra_profiles: Iterable[str] = (), conformance: Conformance | None = None
) -> list[Issue]:
    """Issues of `resource` against the profiles it claims that we hold (plus `extra_profiles`, which must be
    known), and of our extensions wherever they appear. Information issues name the claims not checked."""
    conformance = conformance or registry()
    validator = ProfileValidator(conformance, resource)
    explicit = list(dict.fromkeys(extra_profiles))
    for canonical in claimed_profiles(resource):
        if canonical not in explicit:
            validator.check_profile(canonical)
    for canonical in explicit:
        validator.check_profile(canonical, explicit=True)
    validator.check_our_extensions()
    return validator.issues


def conformance_issues(resource: dict[str, Any], extra_profiles: Iterable[str] = ()) -> list[Issue]:
    """Everything a write is checked for beyond the R4 structure: our profiles and extensions, and a
    QuestionnaireResponse against its Questionnaire (fetched beforehand by questionnaire_validation.prefetch)."""
    return [*profile_issues(resource, extra_profiles), *questionnaire_issues(resource)]
