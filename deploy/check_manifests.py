#!/usr/bin/env python3
"""Offline checks of apitap's deployment files, run by deploy/check.sh (one subcommand a step).

What each check holds the files to (the reasons are in docs/deploy.md):

* ``yaml``: every YAML file under deploy/ parses (Helm templates excepted: they are not YAML
  before rendering); every TOML config parses, including the one embedded in the ConfigMap.
* ``kustomize``: kustomization.yaml lists exactly the manifests of deploy/kubernetes/ that are
  not examples, and each of them exists.
* ``policy FILE``: a rendered manifest stream (kustomize or Helm output) keeps the properties
  issue #7 asks for: hostNetwork, ClusterFirstWithHostNet, only NET_RAW/NET_ADMIN added, a
  read-only root filesystem, a non-root uid matching the image's, probes on /healthz and /readyz
  at the metrics port the config listens on, scrape annotations, requests and limits,
  tolerations for every node, a ServiceAccount without a token and no RBAC objects.
* ``dockerfile``: the image is multi-stage, built with --locked, runs as a non-root numeric uid,
  has a HEALTHCHECK and exec-form ENTRYPOINT/CMD, grants file capabilities; the build context
  filter (Dockerfile.dockerignore) keeps every file Cargo needs and drops target/ and .git.
* ``helm``: Chart.yaml fields, balanced template actions, and every ``.Values.x`` a template
  reads exists in values.yaml (a typo would otherwise render as an empty string).

Exit status 0 when the check passes, 1 with one line per problem on stderr otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # pragma: no cover - older Pythons
    import tomli as tomllib  # type: ignore[no-redef]

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
CHART = DEPLOY / "helm" / "apitap"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"

# The only capabilities a container may add (issue #7: "in containers only NET_RAW and
# NET_ADMIN are added").
ALLOWED_CAPS = {"NET_RAW", "NET_ADMIN"}
RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}


class Problems:
    """Collects failures so one run reports all of them, not just the first."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.items.append(message)
        return ok

    def exit(self) -> int:
        for item in self.items:
            print(f"  {item}", file=sys.stderr)
        return 1 if self.items else 0


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------
# yaml / toml


def cmd_yaml(_args: list[str]) -> int:
    p = Problems()
    count = 0
    for path in sorted(DEPLOY.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix in (".yaml", ".yml"):
            if CHART / "templates" in path.parents:
                continue
            try:
                docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
                p.check(bool(docs), f"{rel(path)}: no YAML document")
                count += 1
            except yaml.YAMLError as e:
                p.check(False, f"{rel(path)}: {e}")
        elif path.suffix == ".toml":
            try:
                tomllib.loads(path.read_text())
                count += 1
            except tomllib.TOMLDecodeError as e:
                p.check(False, f"{rel(path)}: {e}")
    for name, text in embedded_configs(K8S / "configmap.yaml"):
        try:
            tomllib.loads(text)
            count += 1
        except tomllib.TOMLDecodeError as e:
            p.check(False, f"configmap.yaml {name}: {e}")
    p.check(count > 0, "no file checked")
    print(f"  {count} YAML/TOML files parsed")
    return p.exit()


def embedded_configs(path: Path) -> list[tuple[str, str]]:
    out = []
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
            for key, value in (doc.get("data") or {}).items():
                if key.endswith(".toml"):
                    out.append((key, value))
    return out


# --------------------------------------------------------------------------------------------
# kustomize


def cmd_kustomize(_args: list[str]) -> int:
    p = Problems()
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = list(kust.get("resources") or [])
    for item in listed:
        p.check((K8S / item).is_file(), f"kustomization.yaml lists {item}, which does not exist")
    p.check(len(listed) == len(set(listed)), "kustomization.yaml lists a resource twice")
    present = {
        f.name
        for f in K8S.glob("*.yaml")
        if f.name != "kustomization.yaml" and not f.name.endswith(".example.yaml")
    }
    for missing in sorted(present - set(listed)):
        p.check(False, f"{missing} is not listed in kustomization.yaml")
    return p.exit()


# --------------------------------------------------------------------------------------------
# policy


def load_stream(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def image_uid() -> int | None:
    """The numeric uid of the Dockerfile's final USER, if numeric."""
    user = None
    for instr, arg in dockerfile_instructions(DOCKERFILE):
        if instr == "FROM":
            user = None
        elif instr == "USER":
            user = arg.split(":")[0].strip()
    return int(user) if user and user.isdigit() else None


def image_users() -> set[str]:
    """Names the image's user goes by: its uid, and the name useradd gives it."""
    uid = image_uid()
    names = {str(uid)} if uid is not None else set()
    for instr, arg in dockerfile_instructions(DOCKERFILE):
        if instr == "RUN":
            m = re.search(r"useradd\b.*?\s([a-z_][a-z0-9_-]*)\s*(?:&&|$)", arg)
            if m:
                names.add(m.group(1))
    return names


def cmd_policy(args: list[str]) -> int:
    if len(args) != 1:
        print("usage: check_manifests.py policy RENDERED.yaml", file=sys.stderr)
        return 2
    p = Problems()
    docs = load_stream(Path(args[0]))
    kinds = [d.get("kind") for d in docs]
    for kind in RBAC_KINDS & set(kinds):
        p.check(False, f"{kind} found: apitap uses no Kubernetes API and needs no RBAC")
    daemonsets = [d for d in docs if d.get("kind") == "DaemonSet"]
    if not p.check(len(daemonsets) == 1, f"expected one DaemonSet, found {len(daemonsets)}"):
        return p.exit()
    ds = daemonsets[0]
    spec = ds["spec"]
    pod = spec["template"]["spec"]
    meta = spec["template"].get("metadata") or {}

    p.check(spec.get("updateStrategy", {}).get("type") == "RollingUpdate",
            "updateStrategy.type is not RollingUpdate")
    p.check(pod.get("hostNetwork") is True, "hostNetwork is not true")
    p.check(pod.get("dnsPolicy") == "ClusterFirstWithHostNet",
            "dnsPolicy is not ClusterFirstWithHostNet (cluster DNS is lost with hostNetwork)")
    p.check(pod.get("automountServiceAccountToken") is False,
            "the pod mounts a service account token")
    p.check(not pod.get("hostPID") and not pod.get("hostIPC"), "hostPID/hostIPC set")
    tolerations = pod.get("tolerations") or []
    p.check(any(t.get("operator") == "Exists" and not t.get("key") for t in tolerations),
            "no `operator: Exists` toleration: the sensor would skip tainted nodes")

    sa_name = pod.get("serviceAccountName")
    for sa in (d for d in docs if d.get("kind") == "ServiceAccount"):
        p.check(sa.get("automountServiceAccountToken") is False,
                f"ServiceAccount {sa['metadata']['name']} automounts its token")
        p.check(sa["metadata"]["name"] == sa_name,
                f"ServiceAccount {sa['metadata']['name']} is not the pod's ({sa_name})")

    pod_sc = pod.get("securityContext") or {}
    containers = pod.get("containers") or []
    p.check(len(containers) == 1, f"expected one container, found {len(containers)}")
    p.check(not pod.get("initContainers"), "init containers would need their own review")
    uid = image_uid()
    config = config_of(docs, pod)
    metrics_port = None
    if config is not None:
        # The pod starts as the image's user; naming that same user makes apitap clear the
        # file capabilities once the capture is open. Another user would need SETUID/SETGID.
        p.check(config.get("user") in image_users(),
                f"apitap.toml `user` is {config.get('user')!r}, not the image's user "
                f"{sorted(image_users())}: capabilities would be kept or the switch would fail")
        listen = (config.get("metrics") or {}).get("listen", "")
        m = re.search(r":(\d+)$", listen)
        if p.check(m is not None, f"[metrics] listen {listen!r} has no port"):
            metrics_port = int(m.group(1))
        targets = (config.get("outputs") or {}).get("targets") or []
        options = (config.get("kafka") or {}).get("options") or {}
        uses_sasl = any(str(t).startswith("kafka://") for t in targets) and any(
            k.startswith("sasl.") for k in options)
    else:
        p.check(False, "no ConfigMap with apitap.toml mounted at /etc/apitap")
        uses_sasl = False

    for c in containers:
        name = c.get("name")
        sc = c.get("securityContext") or {}
        caps = sc.get("capabilities") or {}
        p.check([x.upper() for x in caps.get("drop") or []] == ["ALL"],
                f"{name}: capabilities.drop is not [ALL]")
        added = {x.upper() for x in caps.get("add") or []}
        p.check(added <= ALLOWED_CAPS, f"{name}: adds {sorted(added - ALLOWED_CAPS)}")
        p.check("NET_RAW" in added, f"{name}: NET_RAW not added: capture cannot open its socket")
        p.check(sc.get("privileged") is not True, f"{name}: privileged")
        p.check(sc.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem writable")
        # Kubernetes sets no_new_privs when allowPrivilegeEscalation is false, and the kernel
        # then ignores the binary's file capabilities: capture would fail with EPERM.
        p.check(sc.get("allowPrivilegeEscalation") is True,
                f"{name}: allowPrivilegeEscalation must be true for file capabilities")
        run_as = sc.get("runAsUser", pod_sc.get("runAsUser"))
        p.check(run_as not in (None, 0), f"{name}: runAsUser is {run_as}")
        if uid is not None:
            p.check(run_as == uid, f"{name}: runAsUser {run_as} is not the image's uid {uid}")
        p.check(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True,
                f"{name}: runAsNonRoot is not true")
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                p.check(r in (res.get(kind) or {}), f"{name}: no resources.{kind}.{r}")

        ports = {pt.get("name"): pt for pt in c.get("ports") or []}
        metrics = ports.get("metrics")
        if p.check(metrics is not None, f"{name}: no port named metrics"):
            cport = metrics.get("containerPort")
            p.check(metrics.get("hostPort") in (None, cport),
                    f"{name}: hostPort differs from containerPort under hostNetwork")
            if metrics_port is not None:
                p.check(cport == metrics_port,
                        f"{name}: metrics port {cport} but apitap.toml listens on {metrics_port}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            p.check(get.get("path") == path, f"{name}: {probe} path is not {path}")
            p.check(get.get("port") in ("metrics", metrics_port),
                    f"{name}: {probe} port is not the metrics port")

        mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
        p.check("/etc/apitap" in mounts and mounts["/etc/apitap"].get("readOnly") is True,
                f"{name}: /etc/apitap not mounted read-only")
        state = mounts.get("/var/lib/apitap")
        p.check(state is not None and not state.get("readOnly"),
                f"{name}: no writable /var/lib/apitap (the root filesystem is read-only)")
        args = c.get("args") or []
        p.check(args[:1] == ["capture"] and "/etc/apitap/apitap.toml" in args,
                f"{name}: args do not run `capture --config /etc/apitap/apitap.toml`")
        env = {e["name"]: e for e in c.get("env") or []}
        if uses_sasl:
            pw = env.get("APITAP_KAFKA_SASL_PASSWORD", {})
            p.check("secretKeyRef" in (pw.get("valueFrom") or {}),
                    f"{name}: Kafka SASL configured but APITAP_KAFKA_SASL_PASSWORD does not "
                    "come from a Secret")
        for e in env.values():
            p.check("value" not in e or "PASSWORD" not in e["name"],
                    f"{name}: {e['name']} has a literal value; use a secretKeyRef")

    ann = meta.get("annotations") or {}
    p.check(ann.get("prometheus.io/scrape") == "true", "no prometheus.io/scrape annotation")
    if metrics_port is not None:
        p.check(ann.get("prometheus.io/port") == str(metrics_port),
                "prometheus.io/port is not the metrics port")
    return p.exit()


def config_of(docs: list[dict], pod: dict) -> dict | None:
    """The parsed apitap.toml of the ConfigMap volume mounted at /etc/apitap."""
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    for c in pod.get("containers") or []:
        for m in c.get("volumeMounts") or []:
            if m.get("mountPath") != "/etc/apitap":
                continue
            cm_name = ((vols.get(m["name"]) or {}).get("configMap") or {}).get("name")
            for d in docs:
                if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == cm_name:
                    text = (d.get("data") or {}).get("apitap.toml")
                    if text is not None:
                        return tomllib.loads(text)
    return None


# --------------------------------------------------------------------------------------------
# dockerfile


def dockerfile_instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        instr, _, arg = full.partition(" ")
        out.append((instr.upper(), arg.strip()))
    return out


def ignore_patterns(ignore_file: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """A .dockerignore file as (is_exception, regex), in file order (last match wins)."""
    pats = []
    for raw in ignore_file.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        if neg:
            line = line[1:].strip()
        line = os.path.normpath(line).lstrip("/")
        # Docker's matcher follows Go's filepath.Match, where `*` stops at `/`; `**` crosses it.
        rx = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif line.startswith("**", i):
                rx += ".*"
                i += 2
            elif line[i] == "*":
                rx += "[^/]*"
                i += 1
            elif line[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(line[i])
                i += 1
        pats.append((neg, re.compile(rx + r"\Z")))
    return pats


def in_context(path: str, pats: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context keeps `path`: a path is excluded when it or a parent matches."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    keep = True
    for neg, rx in pats:
        if any(rx.match(c) for c in candidates):
            keep = neg
    return keep


def repo_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout
        files = [f for f in out.splitlines() if f]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in ("target", ".git")]
        for f in filenames:
            files.append(os.path.relpath(os.path.join(dirpath, f), ROOT))
    return files


def cargo_required_files() -> list[str]:
    """Files Cargo must see to load the workspace: manifests, lock file, every target's source."""
    need = ["Cargo.toml", "Cargo.lock"]
    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = [""] + list((root.get("workspace") or {}).get("members") or [])
    defaults = {"bench": "benches", "test": "tests", "example": "examples", "bin": "src/bin"}
    for member in members:
        base = f"{member}/" if member else ""
        manifest = tomllib.loads((ROOT / base / "Cargo.toml").read_text())
        need.append(f"{base}Cargo.toml")
        if (ROOT / base / "src/lib.rs").exists():
            need.append(f"{base}src/lib.rs")
        if (ROOT / base / "src/main.rs").exists():
            need.append(f"{base}src/main.rs")
        for kind, folder in defaults.items():
            for target in manifest.get(kind) or []:
                path = target.get("path") or f"{folder}/{target['name']}.rs"
                need.append(f"{base}{path}")
    return need


def cmd_dockerfile(args: list[str]) -> int:
    """Checks deploy/docker/Dockerfile, or the Dockerfile given (its .dockerignore beside it)."""
    p = Problems()
    dockerfile = Path(args[0]) if args else DOCKERFILE
    instrs = dockerfile_instructions(dockerfile)
    froms = [a for i, a in instrs if i == "FROM"]
    p.check(len(froms) >= 2, "not a multi-stage build")
    p.check(any(" AS " in f.upper() for f in froms[:-1]), "the build stage has no name")
    final = []
    for i, a in instrs:
        if i == "FROM":
            final = []
        final.append((i, a))
    runs = " ".join(a for i, a in instrs if i == "RUN")
    p.check("cargo build --release --locked" in runs, "no `cargo build --release --locked`")
    p.check("setcap" in " ".join(a for i, a in final if i == "RUN"),
            "the runtime stage grants no file capabilities (setcap)")
    p.check("cap_net_raw" in dockerfile.read_text(), "file capabilities lack cap_net_raw")
    users = [a for i, a in final if i == "USER"]
    user = users[-1].split(":")[0] if users else ""
    p.check(bool(user) and user not in ("0", "root"), f"final USER is {user or 'unset (root)'}")
    p.check(user.isdigit(), "USER is not numeric: Kubernetes runAsNonRoot cannot verify a name")
    p.check(any(i == "HEALTHCHECK" and "CMD" in a for i, a in final), "no HEALTHCHECK")
    for kw in ("ENTRYPOINT", "CMD"):
        vals = [a for i, a in final if i == kw]
        p.check(bool(vals) and vals[-1].startswith("["), f"{kw} missing or not in exec form")
    p.check(not any(i == "ADD" for i, _ in instrs), "ADD used; COPY is explicit")

    # The build context: the repository root filtered by Dockerfile.dockerignore.
    pats = ignore_patterns(dockerfile.with_name(dockerfile.name + ".dockerignore"))
    files = set(repo_files())
    for f in cargo_required_files():
        p.check(in_context(f, pats), f"{f} is needed by cargo but excluded from the context")
    for i, a in instrs:
        if i == "COPY" and "--from=" not in a:
            srcs = [s for s in a.split()[:-1] if not s.startswith("--")]
            for s in srcs:
                if s != ".":
                    p.check(in_context(os.path.normpath(s), pats),
                            f"COPY {s}: excluded by Dockerfile.dockerignore")
    for excluded in ("target/release/apitap", ".git/HEAD", "bench-data/api-mix.pcap",
                     "fuzz/corpus/x", "capture/target/x"):
        p.check(not in_context(excluded, pats), f"{excluded} would be sent to the builder")
    kept = sum(1 for f in files if in_context(f, pats))
    print(f"  build context keeps {kept} of {len(files)} tracked files")
    return p.exit()


# --------------------------------------------------------------------------------------------
# helm


BLOCK_OPEN = re.compile(r"\{\{-?\s*(if|range|with|define|block)\b")
BLOCK_END = re.compile(r"\{\{-?\s*end\s*-?\}\}")
VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def cmd_helm(args: list[str]) -> int:
    """Checks deploy/helm/apitap, or the chart directory given."""
    p = Problems()
    chart_dir = Path(args[0]) if args else CHART
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    p.check(chart.get("apiVersion") == "v2", "Chart.yaml apiVersion is not v2")
    for key in ("name", "version", "appVersion"):
        p.check(bool(chart.get(key)), f"Chart.yaml has no {key}")
    p.check(re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", str(chart.get("version"))) is not None,
            "Chart.yaml version is not SemVer")
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    templates = sorted((chart_dir / "templates").glob("*"))
    p.check(any(t.name == "daemonset.yaml" for t in templates), "no daemonset.yaml template")
    for t in templates:
        text = t.read_text()
        # Comments may hold anything; drop them before counting.
        code = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", text, flags=re.S)
        p.check(code.count("{{") == code.count("}}"), f"{t.name}: unbalanced {{{{ }}}}")
        opens = len(BLOCK_OPEN.findall(code))
        ends = len(BLOCK_END.findall(code))
        p.check(opens == ends, f"{t.name}: {opens} blocks opened, {ends} ended")
        for ref in VALUES_REF.findall(code):
            node = values
            path = []
            for part in ref.strip(".").split("."):
                path.append(part)
                if not isinstance(node, dict) or part not in node:
                    p.check(False, f"{t.name}: .Values.{'.'.join(path)} is not in values.yaml")
                    break
                node = node[part]
    return p.exit()


COMMANDS = {
    "yaml": cmd_yaml,
    "kustomize": cmd_kustomize,
    "policy": cmd_policy,
    "dockerfile": cmd_dockerfile,
    "helm": cmd_helm,
}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(f"usage: {argv[0]} {{{'|'.join(COMMANDS)}}} [ARGS]", file=sys.stderr)
        return 2
    return COMMANDS[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
