"""The server's own conformance resources: read from profiles/ at start, kept in memory, published as resources.

Every JSON file under `profiles/` (recursively) whose top level is a StructureDefinition, CodeSystem, ValueSet,
Questionnaire, SearchParameter, OperationDefinition or ImplementationGuide with a `url` and an `id` is loaded (a
Bundle of them too).
Files that are not FHIR resources (the search-parameter registry, policy tables) are skipped.

- In memory (`registry()`, built once per process: the files do not change while the server runs): profile
  validation (`profile_validation.py`) and QuestionnaireResponse validation (`questionnaire_validation.py`) look
  up StructureDefinitions, ValueSets, CodeSystems and Questionnaires here by canonical URL, synchronously.
- On the server (`publish()`, run in the app's start-up): each one is written through the normal store as
  `[type]/[id]` when it is missing or its content changed, so `GET /fhir/StructureDefinition/tlx-task` and
  `GET /fhir/Questionnaire?url=...` work. The comparison is on a hash of the content without `meta.versionId` /
  `meta.lastUpdated`, so a restart with unchanged files writes nothing (no new version). A resource changed or
  deleted through the API is put back as the file says at the next start: the files are the source of truth.
  Several instances starting together write with If-Match / create-only, so at most one new version is made.

Canonical base of our own resources: `CANONICAL_BASE` (a placeholder until the project has a domain).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pymongo import ReplaceOne

from fhir_server.errors import FHIRError
from fhir_server.storage.clock import now_ms
from fhir_server.storage.store import stamp
from fhir_server.storage.transactions import StagedWrite
from fhir_server.validation import validate_resource

if TYPE_CHECKING:
    from fhir_server.storage.store import ResourceStore

log = logging.getLogger(__name__)

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
CANONICAL_BASE = "https://fhir-server.example/fhir"
CONFORMANCE_TYPES = frozenset(
    {"StructureDefinition", "CodeSystem", "ValueSet", "Questionnaire", "SearchParameter", "ImplementationGuide"}
    | {"OperationDefinition"}  # our operations' definitions (profiles/operations/, profiles/teleexpertise/)
)
CORE_SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


def split_canonical(canonical: str) -> tuple[str, str | None]:
    """`url|version` -> (url, version); a `#fragment` is dropped."""
    url, _, version = canonical.partition("|")
    return url.split("#", 1)[0], version or None


@dataclass
class Conformance:
    """The loaded conformance resources, by type and canonical URL."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    # type -> url -> {version or "": resource}; "" holds the last one loaded for that url.
    _by_url: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    # Problems met while loading (file, message): logged, and visible to tests.
    problems: list[tuple[str, str]] = field(default_factory=list)
    # Memos: the registry does not change once loaded.
    _memo: dict[str, Any] = field(default_factory=dict)

    def add(self, resource: dict[str, Any]) -> None:
        versions = self._by_url.setdefault(resource["resourceType"], {}).setdefault(resource["url"], {})
        versions[""] = resource
        if resource.get("version"):
            versions[resource["version"]] = resource
        self.resources.append(resource)
        self._memo.clear()

    def get(self, resource_type: str, canonical: str) -> dict[str, Any] | None:
        url, version = split_canonical(canonical)
        versions = self._by_url.get(resource_type, {}).get(url)
        if not versions:
            return None
        return versions.get(version or "")

    def structure_definition(self, canonical: str) -> dict[str, Any] | None:
        return self.get("StructureDefinition", canonical)

    def value_set(self, canonical: str) -> dict[str, Any] | None:
        return self.get("ValueSet", canonical)

    def code_system(self, canonical: str) -> dict[str, Any] | None:
        return self.get("CodeSystem", canonical)

    def questionnaire(self, canonical: str) -> dict[str, Any] | None:
        return self.get("Questionnaire", canonical)

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["resourceType"] == resource_type]

    def profiles_by_type(self) -> dict[str, list[str]]:
        """Resource type -> canonical URLs of our resource profiles on it (for CapabilityStatement)."""
        out: dict[str, list[str]] = {}
        for sd in self.of_type("StructureDefinition"):
            if sd.get("kind") == "resource" and sd.get("derivation") == "constraint" and not sd.get("abstract"):
                out.setdefault(sd["type"], []).append(sd["url"])
        return {t: sorted(urls) for t, urls in sorted(out.items())}

    def extension_urls(self) -> frozenset[str]:
        if "extension_urls" not in self._memo:
            self._memo["extension_urls"] = frozenset(
                sd["url"] for sd in self.of_type("StructureDefinition") if sd.get("type") == "Extension"
            )
        return self._memo["extension_urls"]

    def implementation_guides(self) -> list[str]:
        return sorted(ig["url"] for ig in self.of_type("ImplementationGuide"))


def _files(root: Path) -> Iterator[Path]:
    yield from sorted(p for p in root.rglob("*.json") if p.is_file())


def _candidates(document: Any) -> Iterable[dict[str, Any]]:
    if not isinstance(document, dict):
        return []
    if document.get("resourceType") == "Bundle":
        return [e["resource"] for e in document.get("entry") or [] if isinstance(e, dict) and "resource" in e]
    return [document]


def load(profiles_dir: Path = PROFILES_DIR) -> Conformance:
    """Read every conformance resource under `profiles_dir`. Invalid ones are skipped and reported."""
    out = Conformance()
    seen: dict[tuple[str, str], str] = {}
    for path in _files(profiles_dir):
        name = str(path.relative_to(profiles_dir))
        try:
            document = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            out.problems.append((name, f"not JSON: {exc}"))
            continue
        for resource in _candidates(document):
            rtype = resource.get("resourceType")
            if rtype not in CONFORMANCE_TYPES:
                continue
            if not resource.get("url") or not resource.get("id"):
                out.problems.append((name, f"{rtype} without url or id"))
                continue
            errors = [i for i in validate_resource(resource, rtype) if i.severity in ("error", "fatal")]
            if errors:
                first = errors[0]
                out.problems.append((name, f"{rtype}/{resource['id']} is not valid R4: {first.diagnostics}"))
                continue
            key = (rtype, resource["id"])
            if key in seen:
                out.problems.append((name, f"{rtype}/{resource['id']} is also defined in {seen[key]}"))
                continue
            seen[key] = name
            out.add(resource)
    for name, problem in out.problems:
        log.error("conformance resource skipped", extra={"file": name, "problem": problem})
    return out


# ---- value sets: what a ValueSet of ours holds -----------------------------------------------------------


@dataclass(frozen=True)
class Expansion:
    """What a value set holds: exact (system, code) pairs, plus whole code systems we cannot enumerate."""

    codes: frozenset[tuple[str, str]]
    whole_systems: frozenset[str]

    def contains(self, system: str | None, code: str) -> bool:
        if system is None:
            return any(c == code for _, c in self.codes) or bool(self.whole_systems)
        return (system, code) in self.codes or system in self.whole_systems


def _concepts(concepts: Iterable[dict[str, Any]]) -> Iterable[str]:
    for c in concepts:
        yield c["code"]
        yield from _concepts(c.get("concept") or [])


def expand(conformance: Conformance, canonical: str, _depth: int = 0) -> Expansion | None:
    """The expansion of a value set we hold, or None (unknown value set, or too deep)."""
    key = f"expansion:{canonical}"
    if key not in conformance._memo:
        conformance._memo[key] = _expand(conformance, canonical, _depth)
    return conformance._memo[key]


def _expand(conformance: Conformance, canonical: str, _depth: int) -> Expansion | None:
    vs = conformance.value_set(canonical)
    if vs is None or _depth > 10:
        return None
    codes: set[tuple[str, str]] = set()
    whole: set[str] = set()
    compose = vs.get("compose") or {}
    for include in compose.get("include") or []:
        part = _include(conformance, include, _depth)
        if part is None:
            return None
        codes |= part.codes
        whole |= part.whole_systems
    for exclude in compose.get("exclude") or []:
        part = _include(conformance, exclude, _depth)
        if part is not None:
            codes -= part.codes
    for contains in (vs.get("expansion") or {}).get("contains") or []:
        if contains.get("system") and contains.get("code"):
            codes.add((contains["system"], contains["code"]))
    return Expansion(frozenset(codes), frozenset(whole))


def _include(conformance: Conformance, include: dict[str, Any], depth: int) -> Expansion | None:
    system = include.get("system")
    codes: set[tuple[str, str]] = set()
    whole: set[str] = set()
    if system:
        if include.get("concept"):
            codes |= {(system, c["code"]) for c in include["concept"]}
        else:
            cs = conformance.code_system(system)
            if cs is not None and cs.get("content") == "complete" and not include.get("filter"):
                codes |= {(system, code) for code in _concepts(cs.get("concept") or [])}
            else:
                whole.add(system)  # a code system we cannot enumerate (or a filter): any code of it
    for other in include.get("valueSet") or []:
        part = expand(conformance, other, depth + 1)
        if part is None:
            return None
        if system:
            # include.system and include.valueSet together mean the intersection; keep ours simple.
            codes &= part.codes | {(s, c) for s, c in codes if s in part.whole_systems}
        else:
            codes |= part.codes
            whole |= part.whole_systems
    return Expansion(frozenset(codes), frozenset(whole))


@functools.cache
def registry() -> Conformance:
    """The conformance resources of profiles/, loaded once per process."""
    return load()


def content_hash(resource: dict[str, Any]) -> str:
    """A hash of what a resource says, not of when it was stored: meta.versionId/lastUpdated are left out."""
    body = dict(resource)
    meta = {k: v for k, v in (body.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        body["meta"] = meta
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class PublishReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


# What was last published, per resource: {_id: "Type/id", hash, v}. Lets a start with unchanged files check
# everything with small documents only (the resources themselves can be large).
PUBLISHED_COLLECTION = "conformance"


async def publish(store: ResourceStore, conformance: Conformance | None = None) -> PublishReport:
    """Write each loaded conformance resource whose stored content differs (or that is missing). Idempotent.

    It runs at every start, so when nothing changed it reads small documents only: the record of what was
    published (content hash and version) and the current version of each resource (a resource changed or
    deleted through the API since is published again). What must be written goes in one transaction
    (storage/transactions.py: a few bulk operations, not one round trip per resource); if another instance
    writes at the same moment, each resource is then published on its own with If-Match."""
    conformance = conformance or registry()
    report = PublishReport()
    records = store.database.db[PUBLISHED_COLLECTION]
    published = {d["_id"]: d async for d in records.find({})}
    pending: list[tuple[dict[str, Any], dict[str, Any] | None]] = []  # (resource, its current document)
    to_compare: list[tuple[dict[str, Any], dict[str, Any]]] = []
    recorded: list[tuple[dict[str, Any], int]] = []
    for rtype, resources in _by_type(conformance.resources).items():
        ids = [r["id"] for r in resources]
        cursor = store.database.resources(rtype).find({"_id": {"$in": ids}}, {"v": 1, "lu": 1, "gone": 1, "tx": 1})
        current = {d["_id"]: d async for d in cursor}
        for resource in resources:
            key, doc = f"{rtype}/{resource['id']}", current.get(resource["id"])
            record = published.get(key)
            live = doc is not None and not doc.get("gone") and "tx" not in doc
            if live and record and record["v"] == doc["v"] and record["hash"] == content_hash(resource):
                report.unchanged.append(key)
            elif live:
                to_compare.append((resource, doc))  # no record yet (or a stale one): compare the content
            else:
                pending.append((resource, doc))
    for rtype, pairs in _by_type(to_compare).items():
        docs = store.database.resources(rtype).find({"_id": {"$in": [r["id"] for r, _ in pairs]}}, {"res": 1})
        stored = {d["_id"]: d.get("res") async for d in docs}
        for resource, doc in pairs:
            if stored.get(resource["id"]) and content_hash(stored[resource["id"]]) == content_hash(resource):
                report.unchanged.append(f"{rtype}/{resource['id']}")
                recorded.append((resource, doc["v"]))
            else:
                pending.append((resource, doc))
    if pending:
        try:
            recorded += await _publish_together(store, pending, report)
        except FHIRError as exc:
            if exc.status not in (409, 412):
                raise
            for resource, _ in pending:  # someone else wrote meanwhile: one by one, comparing again
                outcome, version = await _publish_one(store, resource)
                getattr(report, outcome).append(f"{resource['resourceType']}/{resource['id']}")
                recorded.append((resource, version))
    await _record(records, recorded)
    for names in (report.created, report.updated, report.unchanged):
        names.sort()
    if report.created or report.updated:
        log.info(
            "conformance resources published",
            extra={"resources_created": len(report.created), "resources_updated": len(report.updated)},
        )
    return report


def _by_type(items: Iterable[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in items:
        resource = item[0] if isinstance(item, tuple) else item
        out.setdefault(resource["resourceType"], []).append(item)
    return out


async def _record(records: Any, published: list[tuple[dict[str, Any], int]]) -> None:
    """Remember what was published (resource, version), in one bulk write."""
    if not published:
        return
    requests = []
    for resource, version in published:
        key = f"{resource['resourceType']}/{resource['id']}"
        requests.append(
            ReplaceOne({"_id": key}, {"_id": key, "hash": content_hash(resource), "v": version}, upsert=True)
        )
    await records.bulk_write(requests, ordered=False)


async def _publish_together(
    store: ResourceStore, pending: list[tuple[dict[str, Any], dict[str, Any] | None]], report: PublishReport
) -> list[tuple[dict[str, Any], int]]:
    now = now_ms()
    writes = []
    for resource, doc in pending:
        if doc is not None and "tx" in doc:
            raise FHIRError(409, "held by a transaction", code="conflict")  # the one-by-one path waits for it
        prev = doc["v"] if doc else 0
        lu = now if doc is None or doc["lu"] < now else doc["lu"] + timedelta(milliseconds=1)
        stored = stamp(copy.deepcopy(resource), resource["id"], prev + 1, lu)
        op = "create" if doc is None or doc.get("gone") else "update"
        writes.append(
            StagedWrite(resource["resourceType"], resource["id"], prev, doc is not None, prev + 1, lu, stored,
                        store.index_fn(stored), op)
        )  # fmt: skip
    await store.tx.run(writes, now)
    for write in writes:
        (report.created if write.op == "create" else report.updated).append(f"{write.resource_type}/{write.id}")
    return [(resource, write.version) for (resource, _), write in zip(pending, writes, strict=True)]


async def _publish_one(store: ResourceStore, resource: dict[str, Any]) -> tuple[str, int]:
    """Write one resource unless an identical one is there: ('created'|'updated'|'unchanged', its version)."""
    rtype, rid = resource["resourceType"], resource["id"]
    want = content_hash(resource)
    for _ in range(5):
        current = await store.current(rtype, rid)
        live = current is not None and not current.get("gone") and current.get("res") is not None
        if live and content_hash(current["res"]) == want:
            return "unchanged", current["v"]
        try:
            if current is None:
                written = await store.write(rtype, rid, copy.deepcopy(resource), require_new=True)
                return "created", written.version
            # If-Match on the version seen: of two instances starting together, one writes.
            written = await store.write(rtype, rid, copy.deepcopy(resource), if_match=current["v"] if live else None)
            return "updated", written.version
        except FHIRError as exc:
            if exc.status not in (409, 412):
                raise
            # another instance wrote it first: compare again
    raise FHIRError(503, f"{rtype}/{rid} could not be published: concurrent writes", code="transient")
