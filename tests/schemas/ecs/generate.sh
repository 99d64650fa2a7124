#!/usr/bin/env bash
# Regenerates ecs-fields.json: every ECS field with its type, whether it is expected to be an
# array (`normalize: array`) and its allowed values (with, for event.category, the event.type
# values expected with each), from the field definitions Elastic publishes in the npm package
# @elastic/ecs (generated/ecs_flat.js, generated from the elastic/ecs repository's
# ecs_flat.yml; Apache-2.0). Descriptions and examples are left out.
# Needs node and npm with access to the npm registry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${ECS_VERSION:-9.4.0}"
tmp="$(mktemp -d)"
(cd "$tmp" && npm pack -q "@elastic/ecs@$version" >/dev/null && tar xzf elastic-ecs-*.tgz)
node - "$tmp/package/generated/ecs_flat.js" "$version" > "$here/ecs-fields.json" <<'JS'
const [file, version] = process.argv.slice(2);
const { EcsFlat } = require(file);
const fields = {};
for (const name of Object.keys(EcsFlat).sort()) {
  const f = EcsFlat[name];
  const out = { type: f.type };
  if ((f.normalize || []).includes("array")) out.array = true;
  if (f.allowed_values) {
    out.allowed = {};
    for (const a of f.allowed_values) out.allowed[a.name] = a.expected_event_types || null;
  }
  fields[name] = out;
}
process.stdout.write(JSON.stringify({ ecs_version: version,
  source: "npm @elastic/ecs@" + version + " generated/ecs_flat.js", fields }, null, 0)
  .replace(/\},"/g, '},\n"') + "\n");
JS
echo "$here/ecs-fields.json: $(grep -c . "$here/ecs-fields.json") lines"
