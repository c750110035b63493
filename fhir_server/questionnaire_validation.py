"""QuestionnaireResponse validation against its Questionnaire, on every write.

The Questionnaire is the one `QuestionnaireResponse.questionnaire` names (`url` or `url|version`, or a relative
`Questionnaire/[id]`): first among our own (profiles/, conformance.py), else in the database. Validation is
synchronous (it runs inside the write validation, interactions/body.py), so the database look-up is done before,
by `prefetch()`, whose answers live in a context variable for the rest of the request.

Checked: every item's linkId exists in the Questionnaire at that place (nesting, under an item or an answer);
items that are not groups appear once, groups more than once only if they repeat; answers only on questions, one
unless the item repeats, of the value type of the item (`valueCoding` for choice, `valueString` for text, ...);
answers to `choice` items among the `answerOption`s or in the `answerValueSet` when it is one of ours; `maxLength`;
`enableWhen` (operators exists, =, !=, >, <, >=, <=; enableBehavior all/any): a disabled item carries no answer;
`required` items (when enabled) are present, with an answer for questions, once the response is `completed` or
`amended` (an `in-progress` response may be partial, as FHIR says).

A response whose Questionnaire cannot be found is refused when the canonical is under our base (or relative), and
accepted otherwise (a questionnaire defined elsewhere), with an information issue for $validate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from fhir_server.conformance import CANONICAL_BASE, Conformance, expand, registry, split_canonical
from fhir_server.validation import Issue

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

RELATIVE_RE = re.compile(r"^Questionnaire/([A-Za-z0-9\-.]{1,64})$")
COMPLETE_STATUSES = frozenset({"completed", "amended"})

# Item type -> the answer value[x] types it takes (choice/open-choice also take their answerOption's types).
ANSWER_TYPES: dict[str, frozenset[str]] = {
    "boolean": frozenset({"Boolean"}),
    "decimal": frozenset({"Decimal"}),
    "integer": frozenset({"Integer"}),
    "date": frozenset({"Date"}),
    "dateTime": frozenset({"DateTime"}),
    "time": frozenset({"Time"}),
    "string": frozenset({"String"}),
    "text": frozenset({"String"}),
    "url": frozenset({"Uri"}),
    "choice": frozenset({"Coding"}),
    "open-choice": frozenset({"Coding", "String"}),
    "attachment": frozenset({"Attachment"}),
    "reference": frozenset({"Reference"}),
    "quantity": frozenset({"Quantity"}),
}
NO_ANSWER_TYPES = frozenset({"group", "display"})

# Questionnaires fetched from the database for the current request: canonical -> resource (None: not found).
_FETCHED: ContextVar[dict[str, dict[str, Any] | None] | None] = ContextVar("fetched_questionnaires", default=None)


# ---- resolution -----------------------------------------------------------------------------------------------


def _questionnaire_canonical(resource: Any) -> str | None:
    if isinstance(resource, dict) and resource.get("resourceType") == "QuestionnaireResponse":
        canonical = resource.get("questionnaire")
        return canonical if isinstance(canonical, str) and canonical else None
    return None


async def prefetch(
    ctx: ServerContext, resources: Iterable[Any], companions: Iterable[Any] = (), conformance: Conformance | None = None
) -> None:
    """Look up in the database the Questionnaires the QuestionnaireResponses among `resources` name (ours from
    profiles/ need no look-up). `companions`: resources written together (a transaction), whose Questionnaires
    count too."""
    conformance = conformance or registry()
    found: dict[str, dict[str, Any] | None] = {}
    for other in companions:
        if isinstance(other, dict) and other.get("resourceType") == "Questionnaire" and other.get("url"):
            found[other["url"]] = other
            if other.get("version"):
                found[f"{other['url']}|{other['version']}"] = other
            if other.get("id"):
                found[f"Questionnaire/{other['id']}"] = other
    for resource in resources:
        canonical = _questionnaire_canonical(resource)
        if canonical is None or canonical in found or conformance.questionnaire(canonical) is not None:
            continue
        found[canonical] = await _from_database(ctx, canonical)
    _FETCHED.set(found)


async def _from_database(ctx: ServerContext, canonical: str) -> dict[str, Any] | None:
    relative = RELATIVE_RE.match(canonical)
    if relative:
        doc = await ctx.store.current("Questionnaire", relative.group(1))
        return doc.get("res") if doc and not doc.get("gone") else None
    from fhir_server.search.engine import compile_filter

    url, version = split_canonical(canonical)
    params = [("url", url)] + ([("version", version)] if version else [])
    compiled = await compile_filter(ctx, "Questionnaire", params, strict=False)
    cursor = ctx.database.resources("Questionnaire").find(compiled.flt, {"res": 1}).sort("lu", -1).limit(1)
    async for doc in cursor:
        return doc.get("res")
    return None


def resolve(canonical: str, conformance: Conformance | None = None) -> dict[str, Any] | None:
    conformance = conformance or registry()
    own = conformance.questionnaire(canonical)
    if own is not None:
        return own
    return (_FETCHED.get() or {}).get(canonical)


# ---- validation -----------------------------------------------------------------------------------------------


def _is_ours(canonical: str) -> bool:
    return canonical.startswith(CANONICAL_BASE + "/") or bool(RELATIVE_RE.match(canonical))


def questionnaire_issues(resource: dict[str, Any], conformance: Conformance | None = None) -> list[Issue]:
    """Issues of a QuestionnaireResponse against its Questionnaire; [] for other resources."""
    canonical = _questionnaire_canonical(resource)
    if canonical is None:
        return []
    conformance = conformance or registry()
    questionnaire = resolve(canonical, conformance)
    if questionnaire is None:
        if _is_ours(canonical):
            return [
                Issue(
                    "error",
                    "not-found",
                    f"the questionnaire {canonical} is not known to this server",
                    ("QuestionnaireResponse.questionnaire",),
                )
            ]
        return [Issue("information", "informational", f"questionnaire {canonical} is not known here: not checked", ())]
    checker = _Checker(conformance, questionnaire, resource)
    checker.run()
    return checker.issues


def _value(answer: dict[str, Any]) -> tuple[str, Any] | None:
    for key, value in answer.items():
        if key.startswith("value") and len(key) > 5 and key[5].isupper():
            return key[5:], value
    return None


def _same_coding(a: Any, b: Any) -> bool:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    if a.get("code") != b.get("code"):
        return False
    return not (a.get("system") and b.get("system")) or a.get("system") == b.get("system")


def _equal(kind: str, actual: Any, expected: Any) -> bool:
    if kind == "Coding":
        return _same_coding(actual, expected)
    if kind == "Quantity":
        return (
            isinstance(actual, dict)
            and isinstance(expected, dict)
            and actual.get("value") == expected.get("value")
            and (actual.get("code") or actual.get("unit")) == (expected.get("code") or expected.get("unit"))
        )
    if kind == "Reference":
        return (
            isinstance(actual, dict)
            and isinstance(expected, dict)
            and actual.get("reference") == expected.get("reference")
        )
    return actual == expected


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    if isinstance(actual, dict) and isinstance(expected, dict):  # Quantity
        actual, expected = actual.get("value"), expected.get("value")
    try:
        if operator == ">":
            return actual > expected
        if operator == "<":
            return actual < expected
        if operator == ">=":
            return actual >= expected
        if operator == "<=":
            return actual <= expected
    except TypeError:
        return False
    return False


class _Checker:
    def __init__(self, conformance: Conformance, questionnaire: dict[str, Any], response: dict[str, Any]) -> None:
        self.conformance = conformance
        self.questionnaire = questionnaire
        self.response = response
        self.issues: list[Issue] = []
        self.complete = response.get("status") in COMPLETE_STATUSES
        self.source = questionnaire.get("url") or f"Questionnaire/{questionnaire.get('id')}"
        self.all_link_ids = {i["linkId"] for i in self._walk_questionnaire(questionnaire.get("item") or [])}
        # linkId -> every answer value given for it in the response (for enableWhen).
        self.answers: dict[str, list[tuple[str, Any]]] = {}
        self._collect(response.get("item") or [])

    def add(self, severity: str, code: str, message: str, path: str) -> None:
        self.issues.append(Issue(severity, code, f"{message} (questionnaire {self.source})", (path,)))

    def _walk_questionnaire(self, items: list[Any]) -> Iterable[dict[str, Any]]:
        for item in items:
            if isinstance(item, dict) and "linkId" in item:
                yield item
                yield from self._walk_questionnaire(item.get("item") or [])

    def _collect(self, items: list[Any]) -> None:
        for item in items:
            if not isinstance(item, dict):
                continue
            for answer in item.get("answer") or []:
                value = _value(answer) if isinstance(answer, dict) else None
                if value is not None:
                    self.answers.setdefault(item.get("linkId", ""), []).append(value)
                if isinstance(answer, dict):
                    self._collect(answer.get("item") or [])
            self._collect(item.get("item") or [])

    def run(self) -> None:
        self._items(self.questionnaire.get("item") or [], self.response.get("item") or [], "QuestionnaireResponse")

    # -- enableWhen ----------------------------------------------------------------------------------------------

    def enabled(self, q_item: dict[str, Any]) -> bool:
        conditions = q_item.get("enableWhen") or []
        if not conditions:
            return True
        results = [self._condition(c) for c in conditions]
        return any(results) if q_item.get("enableBehavior") == "any" else all(results)

    def _condition(self, condition: dict[str, Any]) -> bool:
        given = self.answers.get(condition.get("question", ""), [])
        operator = condition.get("operator")
        expected = _value({k.replace("answer", "value", 1): v for k, v in condition.items() if k.startswith("answer")})
        if operator == "exists":
            return bool(given) == bool(expected[1] if expected else True)
        if expected is None:
            return False
        kind, wanted = expected
        same_kind = [v for k, v in given if k == kind]
        if operator == "=":
            return any(_equal(kind, v, wanted) for v in same_kind)
        if operator == "!=":
            return bool(given) and not any(_equal(kind, v, wanted) for v in same_kind)
        return any(_compare(operator, v, wanted) for v in same_kind)

    # -- items ---------------------------------------------------------------------------------------------------

    def _items(self, q_items: list[Any], r_items: list[Any], parent_path: str) -> None:
        by_link = {q["linkId"]: q for q in q_items if isinstance(q, dict) and "linkId" in q}
        instances: dict[str, list[tuple[dict[str, Any], str]]] = {}
        for i, item in enumerate(r_items):
            path = f"{parent_path}.item[{i}]"
            if not isinstance(item, dict):
                continue
            link_id = item.get("linkId")
            if link_id not in by_link:
                problem = (
                    "belongs elsewhere in the questionnaire (wrong nesting)"
                    if link_id in self.all_link_ids
                    else "does not exist in the questionnaire"
                )
                self.add("error", "invalid", f"{path}: linkId {link_id!r} {problem}", f"{path}.linkId")
                continue
            instances.setdefault(link_id, []).append((item, path))
        for link_id, q_item in by_link.items():
            found = instances.get(link_id, [])
            self._item(q_item, found, parent_path)

    def _item(self, q_item: dict[str, Any], found: list[tuple[dict[str, Any], str]], parent_path: str) -> None:
        link_id, kind = q_item["linkId"], q_item.get("type", "")
        enabled = self.enabled(q_item)
        if not enabled:
            for item, path in found:
                if item.get("answer") or item.get("item"):
                    self.add("error", "business-rule", f"{path}: item {link_id!r} is not enabled (enableWhen) and "
                             "must not be answered", path)  # fmt: skip
            return
        if len(found) > 1 and not (kind == "group" and q_item.get("repeats")):
            self.add(
                "error", "invalid", f"{found[1][1]}: item {link_id!r} appears {len(found)} times but does not repeat",
                found[1][1],
            )  # fmt: skip
        if self.complete and q_item.get("required"):
            answered = any(item.get("answer") for item, _ in found) if kind not in NO_ANSWER_TYPES else bool(found)
            if not answered:
                self.add(
                    "error", "required", f"{parent_path}.item: the required item {link_id!r} "
                    f"({q_item.get('text', '')}) has no answer", f"{parent_path}.item",
                )  # fmt: skip
        for item, path in found:
            self._instance(q_item, item, path)

    def _instance(self, q_item: dict[str, Any], item: dict[str, Any], path: str) -> None:
        kind = q_item.get("type", "")
        answers = item.get("answer") or []
        children = q_item.get("item") or []
        if kind in NO_ANSWER_TYPES and answers:
            self.add("error", "invalid", f"{path}.answer: a {kind} item ({q_item['linkId']!r}) has no answer", path)
            answers = []
        if len(answers) > 1 and not q_item.get("repeats"):
            self.add(
                "error", "invalid", f"{path}.answer: item {q_item['linkId']!r} takes one answer, found "
                f"{len(answers)}", f"{path}.answer[1]",
            )  # fmt: skip
        for j, answer in enumerate(answers):
            if isinstance(answer, dict):
                self._answer(q_item, answer, f"{path}.answer[{j}]")
        if item.get("item"):
            self._items(children, item["item"], path)

    def _answer(self, q_item: dict[str, Any], answer: dict[str, Any], path: str) -> None:
        kind = q_item.get("type", "")
        value = _value(answer)
        if value is not None:
            value_type, actual = value
            allowed = set(ANSWER_TYPES.get(kind, frozenset()))
            options = q_item.get("answerOption") or []
            if kind in ("choice", "open-choice"):
                allowed |= {k for o in options if isinstance(o, dict) for k, _ in [_value(o) or ("", None)] if k}
            if allowed and value_type not in allowed:
                self.add(
                    "error", "value", f"{path}.value: item {q_item['linkId']!r} is of type {kind}, its answers are "
                    f"value{' or value'.join(sorted(allowed))}, not value{value_type}", f"{path}.value",
                )  # fmt: skip
            else:
                self._option(q_item, value_type, actual, options, path)
                max_length = q_item.get("maxLength")
                if isinstance(max_length, int) and isinstance(actual, str) and len(actual) > max_length:
                    self.add(
                        "error", "too-long", f"{path}.value: longer than {max_length} characters", f"{path}.value"
                    )  # fmt: skip
        if answer.get("item"):
            self._items(q_item.get("item") or [], answer["item"], path)

    def _option(self, q_item: dict[str, Any], value_type: str, actual: Any, options: list[Any], path: str) -> None:
        kind = q_item.get("type")
        if kind not in ("choice", "open-choice"):
            return
        if kind == "open-choice" and value_type == "String":
            return  # the "other" free text
        if options:
            values = [_value(o) for o in options if isinstance(o, dict)]
            if not any(v is not None and v[0] == value_type and _equal(value_type, actual, v[1]) for v in values):
                self.add(
                    "error", "code-invalid", f"{path}.value: this answer is not one of the answer options of item "
                    f"{q_item['linkId']!r}", f"{path}.value",
                )  # fmt: skip
            return
        value_set = q_item.get("answerValueSet")
        if value_set and value_type == "Coding" and isinstance(actual, dict):
            expansion = expand(self.conformance, value_set)
            if expansion is not None and not expansion.contains(actual.get("system"), actual.get("code", "")):
                self.add(
                    "error", "code-invalid", f"{path}.value: {actual.get('system')}|{actual.get('code')} is not in "
                    f"the answer value set {value_set} of item {q_item['linkId']!r}", f"{path}.value",
                )  # fmt: skip
