"""Generate fhir_server/validation_types.py from the official FHIR R4 (4.0.1) definitions.

Source: StructureDefinitions and ValueSets of FHIR R4 4.0.1 as packaged in the npm
package ``fhir@4.12.0`` (profiles/types.json, profiles/valuesets.json), cross-checked
against fhir.resources 6.1.0 (the last fhir.resources release generated from R4 4.0.1).
"""
import json, sys
sys.path.insert(0, "/tmp/gen")
from introspect import describe, g

T = json.load(open('/tmp/npmfhir/package/profiles/types.json'))
V = json.load(open('/tmp/npmfhir/package/profiles/valuesets.json'))
PRIMS = {k for k, v in T.items() if v['_kind'] == 'primitive-type'}
R4_RESOURCES = sorted(k for k, v in T.items() if v['_kind'] == 'resource' and k not in ('Resource', 'DomainResource'))

# FHIR.js drops contentReference elements that sit directly under the resource root;
# fhir.resources 6.1.0 (R4) has them. Only the ones inside table-driven types matter here.
MISSING_CONTENT_REFS = {
    'SubstanceSpecification': [('molecularWeight', '#SubstanceSpecification.structure.isotope.molecularWeight', True, False)],
}
# ValueSets FHIR.js could not expand but that are small and fixed in R4.
EXTRA_VS = {
    'http://terminology.hl7.org/ValueSet/v3-ConfidentialityClassification':
        [('http://terminology.hl7.org/CodeSystem/v3-Confidentiality', ['U', 'L', 'M', 'N', 'R', 'V'])],
    # FHIR.js expands the whole resource-types system; R4 lists these eight.
    'http://hl7.org/fhir/ValueSet/care-plan-activity-kind':
        [('http://hl7.org/fhir/resource-types', ['Appointment', 'CommunicationRequest', 'DeviceRequest',
          'MedicationRequest', 'NutritionOrder', 'Task', 'ServiceRequest', 'VisionPrescription'])],
}

# Value sets that pick a few concepts of a code system: FHIR.js expands the whole system.
# The R4 lists (identical to the elements' short descriptions in R4 4.0.1).
SUBSET_VS = {
    'http://hl7.org/fhir/ValueSet/care-plan-intent': 'proposal plan order option',
    'http://hl7.org/fhir/ValueSet/clinicalimpression-status': 'in-progress completed entered-in-error',
    'http://hl7.org/fhir/ValueSet/immunization-evaluation-status': 'completed entered-in-error',
    'http://hl7.org/fhir/ValueSet/immunization-status': 'completed entered-in-error not-done',
    'http://hl7.org/fhir/ValueSet/system-restful-interaction': 'transaction batch search-system history-system',
    'http://hl7.org/fhir/ValueSet/type-restful-interaction':
        'read vread update patch delete history-instance history-type create search-type',
    'http://hl7.org/fhir/ValueSet/task-intent':
        'unknown proposal plan order original-order reflex-order filler-order instance-order option',
}

def props(ps):
    return {p['_name']: p for p in ps if not p['_name'].startswith('_')}

def lookup(path):
    parts = path.split('.')
    ps = T[parts[0]]['_properties']
    for x in parts[1:]:
        ps = props(ps)[x]['_properties']
    return ps

vs_used = {}
def vs_name(url):
    url = url.split('|')[0]
    if url in EXTRA_VS:
        systems = EXTRA_VS[url]
    else:
        e = V.get(url)
        if not e:
            return None
        systems = [(s['uri'], [c['code'] for c in s.get('codes', [])]) for s in e.get('systems', [])]
        if url in SUBSET_VS:
            keep = set(SUBSET_VS[url].split())
            systems = [(u, [c for c in cs if c in keep]) for u, cs in systems]
            assert {c for _, cs in systems for c in cs} == keep, url
    systems = [(u, sorted(set(c))) for u, c in systems if c]
    if not systems:
        return None
    name = url.rstrip('/').split('/')[-1]
    assert vs_used.get(name, systems) == systems, name
    vs_used[name] = systems
    return name

def binding(p):
    if p.get('_valueSetStrength') != 'required':
        return None
    if p['_type'] not in ('code', 'CodeableConcept', 'Coding'):
        return None
    return vs_name(p['_valueSet'])

def target(p, path):
    t = p['_type']
    if t == 'BackboneElement' or (t == 'Element' and p.get('_properties')):
        return path + '.' + p['_name']
    if t.startswith('#'):
        return t[1:]
    if t in ('SimpleQuantity', 'MoneyQuantity'):
        return 'Quantity'
    return t

# ---- model-backed classes: bindings keyed by R4B class name ----
model_bindings = {}
enum_mismatch = []
seen = set()
def walk_model(path, cls):
    if cls.__name__ in seen:
        return
    seen.add(cls.__name__)
    desc = describe(cls)
    for n, p in props(lookup(path)).items():
        b = binding(p)
        if b and n in desc:
            model_bindings[f'{cls.__name__}.{n}'] = b
            enum = desc[n]['enum']
            if enum and '+' not in enum and p['_type'] == 'code':
                codes = {c for _, cs in vs_used[b] for c in cs}
                extra = [e for e in enum if e not in codes]
                if extra:
                    enum_mismatch.append((cls.__name__, n, extra))
        t = target(p, path)
        if '.' in t and n in desc:
            mod = sys.modules[cls.__module__]
            sub = getattr(mod, desc[n]['type'], None) or g(desc[n]['type'])
            walk_model(t, sub)

table_roots = []
for name in R4_RESOURCES + sorted(k for k, v in T.items() if v['_kind'] == 'complex-type'):
    try:
        cls = g(name)
    except ValueError:
        cls = None
    if cls is None or name in ('Evidence', 'EvidenceVariable'):
        if name in ('SimpleQuantity', 'MoneyQuantity'):
            continue
        table_roots.append(name)
        continue
    walk_model(name, cls)

# ---- table-driven types: full element tables ----
tables = {}
def walk_table(path):
    if path in tables:
        return
    elems = {}
    ps = list(lookup(path))
    ps += [{'_name': n, '_type': t, '_multiple': m, '_required': r} for n, t, m, r in MISSING_CONTENT_REFS.get(path, [])]
    for n, p in props(ps).items():
        t = target(p, path)
        choice = p.get('_choice')
        req = bool(p.get('_required'))
        # For a choice member, `required` means the whole choice group is required.
        elems[n] = (t, bool(p['_multiple']), req, choice, binding(p))
    tables[path] = elems
    for n, (t, *_rest) in elems.items():
        if '.' in t:
            walk_table(t)
for r in table_roots:
    walk_table(r)

print('table roots', table_roots, file=sys.stderr)
print('enum mismatches (R4B enum code not in R4 VS):', enum_mismatch, file=sys.stderr)
print(len(model_bindings), 'model bindings', len(vs_used), 'value sets', len(tables), 'tables', file=sys.stderr)
json.dump(dict(resources=R4_RESOURCES, model_bindings=model_bindings, value_sets=vs_used, tables=tables, table_roots=table_roots), open('/tmp/gen/out.json', 'w'), indent=1)

# ---- emit fhir_server/validation_types.py ----
def chunks(words, width=76):
    lines, cur = [], ''
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f'{cur} {w}' if cur else w
    if cur:
        lines.append(cur)
    # keep a trailing space on every line but the last so that concatenation splits right
    return [l + ' ' for l in lines[:-1]] + lines[-1:]

def str_lit(words, indent):
    parts = chunks(words)
    if len(parts) == 1:
        return json.dumps(parts[0])
    pad = ' ' * (indent + 4)
    return '(\n' + ''.join(f'{pad}{json.dumps(p)}\n' for p in parts) + ' ' * indent + ')'

resource_paths = set(R4_RESOURCES)
out = []
w = out.append
w('"""FHIR R4 (4.0.1) definitions that the fhir.resources R4B models cannot supply.\n')
w('Generated data (by a one-off script kept outside this repository). Source: the official FHIR R4 4.0.1')
w('StructureDefinitions and ValueSets (as packaged in the npm package fhir@4.12.0,')
w('profiles/types.json + profiles/valuesets.json), cross-checked against')
w('fhir.resources 6.1.0, the last release of that library generated from R4 4.0.1.\n')
w('- R4_RESOURCE_TYPES_TEXT: every concrete R4 resource type (space separated).')
w('- VALUE_SETS: the codes of every enumerable value set that R4 binds with strength')
w('  "required" to a code / Coding / CodeableConcept element: name -> ((system, codes), ...).')
w('  (mimetypes, currencies, ucum-units and LOINC LL379-9 are not enumerable and absent; the')
w('  value sets that pick a few concepts of a larger code system, which that package expands')
w('  whole, are cut to their R4 concept lists.)')
w('- MODEL_BINDINGS: "<R4B model class>.<element>" -> VALUE_SETS name, i.e. the R4')
w('  required bindings of the elements that are validated through an R4B model.')
w('- TABLE_TYPES: element tables for the R4 types whose R4B model is missing or has a')
w('  different structure (the R4-only resources, Evidence, EvidenceVariable and the')
w('  SubstanceAmount datatype): path -> {element: (type, is_list, required, choice, value_set)}.')
w('  `type` is a primitive type code, a datatype name, "Resource", or the path of a backbone')
w('  element in this table; for a choice member `required` means the choice is required.')
w('"""\n')
w('from __future__ import annotations\n')
w('R4_RESOURCE_TYPES_TEXT: str = ' + str_lit(R4_RESOURCES, 0) + '\n')
w('VALUE_SETS: dict[str, tuple[tuple[str, str], ...]] = {')
for name in sorted(vs_used):
    w(f'    {json.dumps(name)}: (')
    for system, codes in vs_used[name]:
        w(f'        ({json.dumps(system)}, {str_lit(codes, 8)}),')
    w('    ),')
w('}\n')
w('MODEL_BINDINGS: dict[str, str] = {')
for k in sorted(model_bindings):
    w(f'    {json.dumps(k)}: {json.dumps(model_bindings[k])},')
w('}\n')
w('TABLE_TYPES: dict[str, dict[str, tuple[str, bool, bool, str | None, str | None]]] = {')
for path in sorted(tables):
    w(f'    {json.dumps(path)}: {{')
    is_res = path in resource_paths
    for n, (t, lst, req, choice, vs) in tables[path].items():
        if n == 'id' and not is_res:
            t = 'string'  # Element.id is a string; only Resource.id is an id
        w(f'        {json.dumps(n)}: ({json.dumps(t)}, {lst}, {req}, {json.dumps(choice) if choice else None}, {json.dumps(vs) if vs else None}),')
    w('    },')
w('}')
open('/work/main/fhir_server/validation_types.py', 'w').write('\n'.join(out) + '\n')
