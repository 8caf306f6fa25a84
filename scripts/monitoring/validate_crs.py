#!/usr/bin/env python3
"""Validates the custom resources of rendered manifests against their CRDs, offline.

  validate_crs.py CRD_DIR MANIFESTS [RULES_OUT]

CRD_DIR holds CustomResourceDefinition YAML files (the Prometheus Operator's, from the
Go module proxy: scripts/install-chart-tools.sh). Every document of MANIFESTS whose
apiVersion/kind one of them defines is validated against that version's
openAPIV3Schema, strictly: an unknown field is an error (the API server would drop it
silently), unless the schema preserves unknown fields there. Documents of other kinds
are left to kubernetes-validate. With RULES_OUT, the `spec` of every PrometheusRule is
written there as a Prometheus rule file, for `promtool check rules`.
Exits non-zero naming the document and the field.
"""
import glob
import sys

import jsonschema
import yaml

crd_dir, manifests = sys.argv[1], sys.argv[2]
rules_out = sys.argv[3] if len(sys.argv) > 3 else None


def strict(schema):
    """The structural schema with unknown fields refused."""
    if not isinstance(schema, dict):
        return schema
    schema = {k: strict(v) if isinstance(v, dict) else v for k, v in schema.items()}
    if "items" in schema and isinstance(schema["items"], dict):
        schema["items"] = strict(schema["items"])
    if "properties" in schema:
        schema["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = strict(schema["additionalProperties"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [strict(s) for s in schema[key]]
    return schema


schemas = {}
for path in glob.glob(f"{crd_dir}/*.yaml"):
    for crd in yaml.safe_load_all(open(path)):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            # apiVersion, kind and metadata are the API server's; check the rest.
            schema["properties"]["metadata"] = {"type": "object"}
            schemas[(f"{group}/{version['name']}", kind)] = schema
if not schemas:
    sys.exit(f"no CustomResourceDefinition in {crd_dir}")

problems, checked, rules = [], 0, {"groups": []}
for n, doc in enumerate(yaml.safe_load_all(open(manifests))):
    if not doc:
        continue
    key = (doc.get("apiVersion"), doc.get("kind"))
    group = key[0].split("/")[0] if key[0] and "/" in key[0] else ""
    if key not in schemas:
        if group.endswith("coreos.com"):
            problems.append(f"document {n} ({key[1]} {key[0]}): no CRD defines it")
        continue
    checked += 1
    name = f"{key[1]} {doc.get('metadata', {}).get('name')}"
    validator = jsonschema.Draft7Validator(schemas[key])
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{name}: {where}: {error.message}")
    if key[1] == "PrometheusRule":
        rules["groups"].extend(doc.get("spec", {}).get("groups", []))

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
if rules_out:
    yaml.safe_dump(rules, open(rules_out, "w"), sort_keys=False)
print(f"ok: {checked} custom resources valid against their CRDs")
