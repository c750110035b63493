"""Build profiles/search-parameters.r4.json, the compact search-parameter registry the server reads.

Usage: python profiles/build_search_registry.py [path-to-search-parameters.json]
(default: ../shared/fhir-r4/search-parameters.json relative to the repository root)

The input is the official FHIR R4 (4.0.1) SearchParameter bundle. Custom SearchParameter files in
profiles/search-parameters/ are validated and appended too (the server also loads that directory at
startup, so editing a custom parameter does not strictly need a rebuild). The output has one parameter
per line so that diffs stay readable.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from fhir_server.search.registry import (  # noqa: E402  (needs the sys.path line above)
    CORE_FILE,
    CUSTOM_DIR,
    PROFILES_DIR,
    definitions_in,
    read_custom_definitions,
)

DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "fhir-r4" / "search-parameters.json"


def build(source: Path) -> dict:
    with source.open(encoding="utf-8") as fh:
        bundle = json.load(fh)
    core = list(definitions_in(bundle))
    custom = read_custom_definitions(PROFILES_DIR / CUSTOM_DIR)
    core.sort(key=lambda d: d["url"])
    return {
        "fhirVersion": "4.0.1",
        "source": f"{source.name} ({bundle.get('id', '')}, {len(bundle.get('entry') or [])} entries)",
        "params": [*core, *custom],
        "custom": len(custom),
    }


def dump(registry: dict) -> str:
    """JSON with one parameter per line."""
    head = {k: v for k, v in registry.items() if k != "params"}
    lines = [json.dumps(p, ensure_ascii=False, separators=(",", ":")) for p in registry["params"]]
    body = ",\n".join(lines)
    head_json = json.dumps(head, ensure_ascii=False)[:-1]
    return f'{head_json}, "params": [\n{body}\n]}}\n'


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    registry = build(source)
    out = PROFILES_DIR / CORE_FILE
    text = dump(registry)
    json.loads(text)  # never write a file the server cannot read
    out.write_text(text, encoding="utf-8")
    types = Counter(p["type"] for p in registry["params"])
    print(f"wrote {out} : {len(registry['params'])} parameters ({registry['custom']} custom) {dict(types)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
