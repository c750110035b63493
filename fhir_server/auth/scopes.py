"""SMART scopes, v1 (`system/*.read`) and v2 (`system/Observation.rs`), and what they allow.

Actions: c create, r read (read, vread, history), u update/patch, d delete, s search.
"""

from __future__ import annotations

import re

_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Za-z]+)\.(\*|read|write|[cruds]+)(\?.*)?$")
V1 = {"*": "cruds", "read": "rs", "write": "cud"}


def allows(scopes: frozenset[str], resource_type: str | None, action: str, *, context: str = "user") -> bool:
    """Does some scope of `context` grant `action` on `resource_type` (None = every type)?

    context "user" counts `user/` and `system/` scopes (unconfined access); "patient" counts `patient/`
    scopes, which only ever grant access inside the token's patient compartment (patient_context.py).
    Scopes with a `?` restriction (SMART v2 fine-grained) never count here: they grant only the
    searches and reads that auth/scope_queries.py narrows to their parameters.
    """
    for scope in scopes:
        m = _SCOPE.match(scope)
        if not m or m.group(4) or (m.group(1) == "patient") != (context == "patient"):
            continue
        rtype, perm = m.group(2), m.group(3)
        if rtype not in ("*", resource_type):
            continue
        if action in V1.get(perm, perm):
            return True
    return False
