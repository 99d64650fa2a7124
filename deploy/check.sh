#!/usr/bin/env bash
# Offline checks of the deployment files under deploy/ (see docs/deploy.md). Run from anywhere:
#
#   deploy/check.sh
#
# Each step prints "ok", "FAIL" (with the reasons) or "skip" (with why); the last line is
# "N passed, N failed, N skipped" and the exit status is non-zero when a step failed.
#
# What runs where:
# - Always: YAML/TOML parsing, kustomization completeness, Kubernetes schema validation
#   (kubernetes-validate, strict, oldest and newest bundled API versions), the policy checks of
#   check_manifests.py on the rendered manifests, the Helm chart's static checks, Dockerfile and
#   build-context checks, the image's health-check script against a local HTTP server, shell
#   syntax. Each checker is also fed a broken copy once, to show it can fail.
# - When the tool is there: `kubectl kustomize` (else the resources are concatenated),
#   `helm lint`/`helm template` (no Helm is installed by this script), shellcheck,
#   systemd-analyze verify/security.
# - As root with network namespaces: span-interface.sh on a veth pair, and the kernel behaviour
#   the manifests rely on (file capabilities for a non-root uid, lost under no_new_privs).
# - With an apitap binary that has `config check` (APITAP_BIN, or target/{release,debug}):
#   every shipped configuration is checked by apitap itself.
#
# Installs, only when missing: PyYAML and kubernetes-validate from PyPI into a cached virtualenv
# (~/.cache/apitap/deploy-venv); python3-venv with apt-get when venv is unavailable.
# No Docker engine is needed or used: the image is not built here.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

passed=0
failed=0
skipped=0
work="$(mktemp -d)"
chmod 0755 "${work}"
trap 'rm -rf "${work}"' EXIT

ok() {
  passed=$((passed + 1))
  echo "ok    $1"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL  $1"
  [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/      /'
}
skip() {
  skipped=$((skipped + 1))
  echo "skip  $1 ($2)"
}
# step NAME COMMAND...: runs the command, ok on status 0, FAIL with its output otherwise.
step() {
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then
    ok "${name}"
    [ -z "${out}" ] || printf '%s\n' "${out}" | sed 's/^/      /'
  else
    fail "${name}" "${out}"
  fi
}
# must_fail NAME COMMAND...: a checker fed a broken input must reject it.
must_fail() {
  local name="$1"
  shift
  if "$@" >/dev/null 2>&1; then
    fail "${name}" "the checker accepted a broken input"
  else
    ok "${name}"
  fi
}

# --- Python tools ---------------------------------------------------------------------------
PY=python3
if ! python3 -c 'import yaml, kubernetes_validate' >/dev/null 2>&1; then
  venv="${XDG_CACHE_HOME:-${HOME}/.cache}/apitap/deploy-venv"
  if [ ! -x "${venv}/bin/kubernetes-validate" ]; then
    echo "deploy/check.sh: installing PyYAML and kubernetes-validate into ${venv}" >&2
    if ! python3 -m venv "${venv}" >/dev/null 2>&1; then
      SUDO=""
      [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "${venv}" || { echo "deploy/check.sh: cannot create ${venv}" >&2; exit 1; }
    fi
    "${venv}/bin/pip" install -q "PyYAML==6.0.3" "kubernetes-validate==1.37.0" \
      || { echo "deploy/check.sh: cannot install kubernetes-validate" >&2; exit 1; }
  fi
  PY="${venv}/bin/python"
fi
CHECK=("${PY}" deploy/check_manifests.py)
KV=("${PY}" -m kubernetes_validate --strict --quiet)
# The oldest and the newest API versions kubernetes-validate 1.37 bundles schemas for.
KUBE_VERSIONS=(1.25.0 1.37.0)

validate() { # validate FILE...: strict schema validation against every version in KUBE_VERSIONS
  local v
  for v in "${KUBE_VERSIONS[@]}"; do
    "${KV[@]}" -k "${v}" "$@" || return 1
  done
}

# --- YAML, TOML, Kubernetes manifests ------------------------------------------------------
step "yaml/toml: every file parses" "${CHECK[@]}" yaml
step "kustomization lists every manifest" "${CHECK[@]}" kustomize
manifests=(deploy/kubernetes/*.yaml)
schema_files=()
for f in "${manifests[@]}"; do
  [ "$(basename "$f")" = kustomization.yaml ] || schema_files+=("$f")
done
step "kubernetes schemas (${KUBE_VERSIONS[*]}): ${#schema_files[@]} manifests" validate "${schema_files[@]}"

rendered="${work}/kustomize.yaml"
if command -v kubectl >/dev/null 2>&1; then
  # shellcheck disable=SC2016 # $1 is expanded by the inner sh
  step "kubectl kustomize deploy/kubernetes" sh -c 'kubectl kustomize deploy/kubernetes > "$1"' _ "${rendered}"
else
  skip "kubectl kustomize" "no kubectl; checking the listed resources concatenated"
  "${PY}" - "${rendered}" <<'EOF'
import sys, yaml
from pathlib import Path
k = yaml.safe_load(Path("deploy/kubernetes/kustomization.yaml").read_text())
with open(sys.argv[1], "w") as out:
    for r in k["resources"]:
        out.write("---\n" + Path("deploy/kubernetes", r).read_text())
EOF
fi
step "kubernetes schemas: kustomize output" validate "${rendered}"
step "policy: kustomize output" "${CHECK[@]}" policy "${rendered}"

# The checkers must be able to fail: a misspelt field, and a DaemonSet with more privilege.
"${PY}" - "${rendered}" "${work}" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def daemonset(ds):
    return next(d for d in ds if d["kind"] == "DaemonSet")
typo = yaml.safe_load_all(open(sys.argv[1]))
typo = [d for d in typo if d]
pod = daemonset(typo)["spec"]["template"]["spec"]
pod["hostNetwrk"] = pod.pop("hostNetwork")
yaml.safe_dump_all(typo, open(sys.argv[2] + "/typo.yaml", "w"))
for name, change in {
    "sysadmin": lambda c, p: c["securityContext"]["capabilities"]["add"].append("SYS_ADMIN"),
    "nnp": lambda c, p: c["securityContext"].update(allowPrivilegeEscalation=False),
    "rootfs": lambda c, p: c["securityContext"].update(readOnlyRootFilesystem=False),
    "probe": lambda c, p: c["livenessProbe"]["httpGet"].update(path="/"),
    "nohostnet": lambda c, p: p.update(hostNetwork=False),
}.items():
    ds = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    pod = daemonset(ds)["spec"]["template"]["spec"]
    change(pod["containers"][0], pod)
    yaml.safe_dump_all(ds, open(f"{sys.argv[2]}/bad-{name}.yaml", "w"))
EOF
must_fail "self-test: schema validation rejects a misspelt field" validate "${work}/typo.yaml"
for bad in "${work}"/bad-*.yaml; do
  name="$(basename "${bad}" .yaml)"
  must_fail "self-test: policy rejects ${name#bad-}" "${CHECK[@]}" policy "${bad}"
done

# --- Helm -----------------------------------------------------------------------------------
chart=deploy/helm/apitap
step "helm chart: static checks" "${CHECK[@]}" helm
cp -r "${chart}" "${work}/chart-typo"
sed -i 's/\.Values\.capture\.bpf/.Values.capture.bfp/' "${work}/chart-typo/templates/_helpers.tpl"
must_fail "self-test: helm checks reject an unknown .Values key" "${CHECK[@]}" helm "${work}/chart-typo"
if command -v helm >/dev/null 2>&1; then
  step "helm lint" helm lint "${chart}"
  for variant in default password nokafka; do
    case "${variant}" in
      default) set_args=() ;;
      password) set_args=(--set kafka.sasl.password=example) ;;
      nokafka) set_args=(--set kafka.enabled=false --set kafka.sasl.existingSecret=) ;;
    esac
    out="${work}/helm-${variant}.yaml"
    if helm template apitap "${chart}" --namespace apitap "${set_args[@]}" >"${out}" 2>"${work}/helm.err"; then
      step "helm template (${variant}): kubernetes schemas" validate "${out}"
      step "helm template (${variant}): policy" "${CHECK[@]}" policy "${out}"
    else
      fail "helm template (${variant})" "$(cat "${work}/helm.err")"
    fi
  done
else
  skip "helm lint / helm template" "no helm binary on this machine; the chart was not rendered"
fi

# --- Container image ------------------------------------------------------------------------
step "Dockerfile and build context" "${CHECK[@]}" dockerfile
cp deploy/docker/Dockerfile deploy/docker/Dockerfile.dockerignore "${work}/"
sed -i 's/^USER .*/USER root/; /^HEALTHCHECK/,/CMD/d' "${work}/Dockerfile"
must_fail "self-test: Dockerfile check rejects USER root without HEALTHCHECK" \
  "${CHECK[@]}" dockerfile "${work}/Dockerfile"

# The health check against a stand-in for the metrics endpoint: 200 healthy, 503 and a closed
# port unhealthy.
healthcheck_case() { # healthcheck_case STATUS EXPECTED_EXIT
  local status="$1" expect="$2" port rc
  exec {srv}< <("${PY}" -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(int(sys.argv[1]) if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
s.timeout = 10
print(s.server_address[1], flush=True)
s.handle_request()
' "${status}" 2>/dev/null)
  read -r -t 10 port <&"${srv}" || return 1
  APITAP_HEALTHCHECK_ADDR="127.0.0.1:${port}" deploy/docker/healthcheck.sh 2>/dev/null
  rc=$?
  exec {srv}<&-
  [ "${rc}" -eq "${expect}" ]
}
closed_port() {
  ! APITAP_HEALTHCHECK_ADDR=127.0.0.1:1 deploy/docker/healthcheck.sh 2>/dev/null
}
step "healthcheck.sh: 200 is healthy" healthcheck_case 200 0
step "healthcheck.sh: 503 is unhealthy" healthcheck_case 503 1
step "healthcheck.sh: closed port is unhealthy" closed_port

# --- Shell scripts --------------------------------------------------------------------------
step "shell syntax" sh -c 'bash -n deploy/check.sh && bash -n deploy/docker/healthcheck.sh && sh -n deploy/systemd/span-interface.sh'
if command -v shellcheck >/dev/null 2>&1; then
  step "shellcheck" shellcheck deploy/check.sh deploy/docker/healthcheck.sh deploy/systemd/span-interface.sh
else
  skip "shellcheck" "not installed (apt-get install shellcheck)"
fi

# --- systemd --------------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart binaries exist: check copies pointing at a stub. It exits 0
  # on unknown keys and bad values, printing a warning, so any output is a failure.
  stub="${work}/stub"
  printf '#!/bin/sh\nexit 0\n' >"${stub}"
  chmod +x "${stub}"
  sed "s#/usr/local/bin/apitap#${stub}#g" deploy/systemd/apitap.service >"${work}/apitap.service"
  sed "s#/usr/local/sbin/span-interface#${stub}#g" 'deploy/systemd/span-interface@.service' \
    >"${work}/span-interface@eth1.service"
  # The VXLAN drop-in, applied the way systemd applies drop-ins: its settings after the unit's.
  cat "${work}/apitap.service" deploy/systemd/apitap-vxlan.conf >"${work}/apitap-vxlan.service"
  verify_units() {
    local out
    out="$(cd "${work}" && systemd-analyze verify ./apitap.service ./apitap-vxlan.service \
      ./span-interface@eth1.service 2>&1)" || {
      echo "${out}"
      return 1
    }
    [ -z "${out}" ] || {
      echo "${out}"
      return 1
    }
  }
  step "systemd-analyze verify" verify_units
  printf '[Service]\nExecStart=%s\nProtectSystem=sideways\n' "${stub}" >"${work}/bad.service"
  bad_unit() {
    local out
    out="$(cd "${work}" && systemd-analyze verify ./bad.service 2>&1)" && [ -z "${out}" ]
  }
  must_fail "self-test: verify output catches a bad value" bad_unit
  # Exposure score (0 = locked down, 10 = unconfined); 2.5 leaves room for the capabilities and
  # address families capture needs, nothing more.
  security() { # security UNIT THRESHOLD
    local out rc
    out="$(cd "${work}" && systemd-analyze security --offline=yes --threshold="$2" "./$1" 2>&1)"
    rc=$?
    if [ "${rc}" -eq 0 ]; then
      printf '%s\n' "${out}" | grep -E 'Overall exposure'
    else
      printf '%s\n' "${out}" | grep -E 'Overall exposure|^✗'
    fi
    return "${rc}"
  }
  step "systemd-analyze security apitap.service (exposure <= 2.5)" security apitap.service 25
  # Without capabilities and packet sockets the VXLAN variant must score better still.
  step "systemd-analyze security apitap.service + apitap-vxlan.conf (exposure <= 2.0)" \
    security apitap-vxlan.service 20
else
  skip "systemd-analyze" "not installed"
fi

# --- Behaviour in network namespaces (root only) --------------------------------------------
netns_ok=0
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 \
  && unshare -n -m true >/dev/null 2>&1; then
  netns_ok=1
fi

if [ "${netns_ok}" -eq 1 ]; then
  # In a private network and mount namespace (its own /sys): a veth pair stands in for the
  # SPAN port; the script runs twice to show it is idempotent.
  span_test() {
    # shellcheck disable=SC2016 # expanded inside the namespace
    unshare -n -m sh -ec '
      mount -t sysfs sysfs /sys
      ip link add span0 type veth peer name span1
      ip address add 192.0.2.1/24 dev span0
      deploy/systemd/span-interface.sh span0 9000 >/dev/null 2>&1
      deploy/systemd/span-interface.sh span0 9000 >/dev/null 2>&1
      link="$(ip -details link show dev span0)"
      echo "$link" | grep -q "promiscuity [1-9]" || { echo "not promiscuous: $link"; exit 1; }
      echo "$link" | grep -q "NOARP" || { echo "ARP still on: $link"; exit 1; }
      echo "$link" | grep -q "mtu 9000" || { echo "MTU not set: $link"; exit 1; }
      echo "$link" | grep -q ",UP" || echo "$link" | grep -q "<UP" || { echo "not up: $link"; exit 1; }
      addrs="$(ip -o address show dev span0)"
      [ -z "$addrs" ] || { echo "addresses left: $addrs"; exit 1; }
      [ "$(cat /proc/sys/net/ipv6/conf/span0/disable_ipv6)" = 1 ] || { echo "IPv6 on"; exit 1; }
      if command -v ethtool >/dev/null 2>&1; then
        ethtool -k span0 | grep -q "generic-receive-offload: off" || { echo "GRO on"; exit 1; }
      fi
      if deploy/systemd/span-interface.sh nosuchif0 >/dev/null 2>&1; then
        echo "accepted a missing interface"; exit 1
      fi
    '
  }
  step "span-interface.sh on a veth pair" span_test
else
  skip "span-interface.sh on a veth pair" "needs root and network namespaces"
fi

# The kernel rules behind the DaemonSet's securityContext, shown with a file-capable copy of
# the system Python standing in for apitap, run as uid 10001 (the image's user):
#  1. bounding set NET_RAW+NET_ADMIN, no no_new_privs: a promiscuous AF_PACKET socket opens;
#  2. with no_new_privs (allowPrivilegeEscalation: false) the file capabilities are ignored;
#  3. with NET_ADMIN missing from the bounding set, exec itself fails (the effective bit is
#     set, and the kernel refuses a partial grant), which is why FILE_CAPS and the pod's
#     capabilities must change together;
#  4. NET_RAW alone (file caps cap_net_raw=ep, bounding set NET_RAW) is enough for the
#     promiscuous socket: NET_ADMIN is not needed for capture itself.
sys_python="$(readlink -f /usr/bin/python3 2>/dev/null || true)"
if [ "${netns_ok}" -eq 1 ] && [ -x "${sys_python}" ] && command -v setcap >/dev/null 2>&1 \
  && command -v setpriv >/dev/null 2>&1; then
  cp "${sys_python}" "${work}/capture-standin"
  cp "${sys_python}" "${work}/capture-standin-raw"
  cat >"${work}/open_capture.py" <<'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
# PACKET_ADD_MEMBERSHIP / PACKET_MR_PROMISC, as libpcap does for promiscuous mode.
mreq = struct.pack("iHH8s", socket.if_nametoindex(sys.argv[1]), 1, 0, b"\0" * 8)
s.setsockopt(263, 1, mreq)
print("opened")
EOF
  chmod 0644 "${work}/open_capture.py"
  if setcap cap_net_raw,cap_net_admin=ep "${work}/capture-standin" 2>/dev/null \
    && setcap cap_net_raw=ep "${work}/capture-standin-raw" 2>/dev/null; then
    caps_test() {
      # shellcheck disable=SC2016 # expanded inside the namespace
      W="${work}" unshare -n sh -c '
        ip link add cap0 type veth peer name cap1 && ip link set cap0 up || exit 1
        as_pod() { # as_pod BOUNDING [--no-new-privs] [STANDIN]: start as a container runtime would
          setpriv --reuid=10001 --regid=10001 --clear-groups --inh-caps=-all \
            --bounding-set="-all,$1" ${2:-} /bin/sh -c "exec \"$W/${3:-capture-standin}\" \"$W/open_capture.py\" cap0"
        }
        as_pod +net_raw,+net_admin >/dev/null 2>&1 || { echo "1: file capabilities did not work"; exit 1; }
        if as_pod +net_raw,+net_admin --no-new-privs >/dev/null 2>&1; then
          echo "2: no_new_privs did not block file capabilities"; exit 1
        fi
        if as_pod +net_raw >/dev/null 2>&1; then
          echo "3: exec succeeded with NET_ADMIN outside the bounding set"; exit 1
        fi
        as_pod +net_raw "" capture-standin-raw >/dev/null 2>&1 \
          || { echo "4: NET_RAW alone did not open a promiscuous packet socket"; exit 1; }
      '
    }
    step "capability model (file caps, no_new_privs, bounding set, NET_RAW alone)" caps_test
  else
    skip "capability model" "setcap failed on ${work} (filesystem without xattrs?)"
  fi
else
  skip "capability model" "needs root, network namespaces, /usr/bin/python3, setcap and setpriv"
fi

# --- apitap's own configuration check -------------------------------------------------------
apitap_bin="${APITAP_BIN:-}"
if [ -z "${apitap_bin}" ]; then
  for candidate in "${CARGO_TARGET_DIR:-target}/release/apitap" "${CARGO_TARGET_DIR:-target}/debug/apitap"; do
    if [ -x "${candidate}" ]; then
      apitap_bin="${candidate}"
      break
    fi
  done
fi
if [ -n "${apitap_bin}" ] && "${apitap_bin}" config check --help >/dev/null 2>&1; then
  "${PY}" - "${work}" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open("deploy/kubernetes/configmap.yaml")):
    if d and d.get("kind") == "ConfigMap":
        open(sys.argv[1] + "/configmap-apitap.toml", "w").write(d["data"]["apitap.toml"])
EOF
  for cfg in deploy/docker/apitap.toml deploy/systemd/apitap.toml deploy/systemd/apitap-vxlan.toml \
    "${work}/configmap-apitap.toml"; do
    step "apitap config check ${cfg#"${work}"/}" "${apitap_bin}" config check "${cfg}"
  done
else
  skip "apitap config check" "no apitap binary with \`config check\` (set APITAP_BIN)"
fi

echo
echo "deploy: ${passed} passed, ${failed} failed, ${skipped} skipped"
[ "${failed}" -eq 0 ]
