"""Shared helper: describe R4B model classes as {alias: (type, list, required, choice)}."""
import typing, types, uuid
from fhir.resources.R4B import get_fhir_model_class as g
from fhir_core.types import FhirBase, FhirElementOrResourceBase

def unwrap(ann):
    is_list = False
    while True:
        origin = typing.get_origin(ann)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = args[0]
            continue
        if origin in (list, typing.List):
            is_list = True
            ann = typing.get_args(ann)[0]
            continue
        break
    return ann, is_list

def type_name(ann):
    if ann is bool: return "boolean"
    if typing.get_origin(ann) is typing.Annotated:
        base, *meta = typing.get_args(ann)
        for m in meta:
            vn = getattr(m, "__visit_name__", None)
            if vn: return vn
        if base is uuid.UUID: return "uuid"
        raise ValueError(ann)
    if isinstance(ann, type) and issubclass(ann, FhirBase):
        k = ann.get_model_klass()
        return k.__name__
    if ann is str: return "str"
    raise ValueError(ann)

def describe(cls):
    out = {}
    for name, f in cls.model_fields.items():
        if name.endswith("__ext") or name == "fhir_comments": continue
        ann, lst = unwrap(f.annotation)
        ex = f.json_schema_extra or {}
        out[f.alias or name] = dict(type=type_name(ann), list=lst,
            req=f.is_required() or bool(ex.get("element_required")) or bool(ex.get("one_of_many_required")),
            choice=ex.get("one_of_many"), enum=ex.get("enum_values"))
    return out
