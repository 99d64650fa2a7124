#!/usr/bin/env bash
# Regenerates the vendored OCSF JSON Schemas in this directory.
#
# Source: the OCSF schema as exported by schema.ocsf.io (`/1.5.0/export/schema`), bundled in the
# PyPI package ocsf-json-schema (MIT; the bundled OCSF schema is Apache-2.0), whose generator
# turns one class (with its objects embedded) into a JSON Schema draft 2020-12 document.
# Needs python3 with venv and access to PyPI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${OCSF_VERSION:-1.5.0}"
pkg="${OCSF_JSON_SCHEMA_VERSION:-1.2.0}"
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q "ocsf-json-schema==$pkg"
mkdir -p "$here/$version"
"$venv/bin/python" - "$here/$version" "$version" <<'PY'
import json, sys
from ocsf_json_schema import get_ocsf_schema, OcsfJsonSchemaEmbedded
out, version = sys.argv[1], sys.argv[2]
schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
for uid in (4002, 6003, 2004):
    name = schema.lookup_class_name_from_uid(class_uid=uid)
    js = schema.get_class_schema(class_name=name, profiles=[])
    with open(f"{out}/{name}.json", "w") as f:
        json.dump(js, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{out}/{name}.json: class {uid}")
PY
