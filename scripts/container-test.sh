#!/usr/bin/env bash
# Build the container image and prove it works: `make container-test`.
#
# Needs root (rootful podman) on Debian/Ubuntu. Installs podman, buildah, runc and mmdebstrap when missing,
# builds the image on a Debian base made locally (no registry pulls), runs it on 127.0.0.1 with a generated
# trusted-clients file and test key, and checks what hospital IT relies on. Removes the containers, the
# image and the temporary files it created; keeps the base image and its tarball as a cache
# (CDS_CONTAINER_CACHE, default /var/tmp/cds-container-cache) so the next run is fast.
#
# Environment: PYTHON (default .venv/bin/python), CDS_CONTAINER_CACHE, CDS_CONTAINER_KEEP=1 (keep the image
# and the running container for inspection).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CACHE="${CDS_CONTAINER_CACHE:-/var/tmp/cds-container-cache}"
BASE_IMAGE="localhost/debian-python:bookworm"
RUN_ID="$$-$(date +%s)"
IMAGE="localhost/cds-service:container-test-$RUN_ID"
NAME="cds-container-test-$RUN_ID"
WORK="$(mktemp -d /tmp/cds-container-test.XXXXXX)"
HELPER=("$PYTHON" "$ROOT/scripts/container_request.py")
PASSED=0
FAILED=0
CONTAINERS=()

log() { printf '[container-test] %s\n' "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$*"; }

cleanup() {
    local status=$?
    if [[ "${CDS_CONTAINER_KEEP:-0}" == "1" ]]; then
        log "keeping image $IMAGE, containers ${CONTAINERS[*]:-none} and $WORK (CDS_CONTAINER_KEEP=1)"
        return "$status"
    fi
    for container in "${CONTAINERS[@]}"; do
        podman rm -f -t 5 "$container" >/dev/null 2>&1 || true
    done
    podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    return "$status"
}
trap cleanup EXIT

# --- 1. tools ---------------------------------------------------------------------------------------
install_tools() {
    local missing=()
    for tool in podman buildah runc mmdebstrap; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    if [[ $EUID -ne 0 ]]; then
        log "missing ${missing[*]} and not root: install them (apt-get install podman buildah runc mmdebstrap)"
        exit 2
    fi
    log "installing ${missing[*]} with apt-get"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah runc mmdebstrap >/dev/null
}

# podman's default runtime (crun) and ulimits fail on these machines; runc with low limits works.
configure_podman() {
    local conf=/etc/containers/containers.conf
    if [[ -n "${CONTAINERS_CONF:-}" ]]; then
        log "using CONTAINERS_CONF=$CONTAINERS_CONF as given"
        return
    fi
    if [[ ! -e "$conf" ]]; then
        mkdir -p /etc/containers
        cat >"$conf" <<'CONF'
# Written by cds-service scripts/container-test.sh: runc and low ulimits (see docs/operations.md).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
        log "wrote $conf (runtime = runc, default_ulimits nofile/nproc 1024)"
    elif grep -Eq '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$conf"; then
        :
    else
        # Leave the machine's file alone; this run alone uses a private one.
        export CONTAINERS_CONF="$WORK/containers.conf"
        cat >"$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
        log "$conf does not select runc; left it unchanged and used CONTAINERS_CONF=$CONTAINERS_CONF for this run"
    fi
}

# --- 2. base image (cached) --------------------------------------------------------------------------
ensure_base_image() {
    if podman image exists "$BASE_IMAGE"; then
        log "base image $BASE_IMAGE present"
        return
    fi
    local tarball="$CACHE/debian-python-bookworm.tar"
    mkdir -p "$CACHE"
    if [[ ! -s "$tarball" ]]; then
        log "building the Debian bookworm base with mmdebstrap (about 30 s)"
        mmdebstrap --quiet --variant=minbase --format=tar \
            --include=python3,python3-venv,python3-pip,ca-certificates \
            bookworm "$tarball.partial"
        mv "$tarball.partial" "$tarball"
    fi
    log "importing $tarball as $BASE_IMAGE"
    podman import --quiet "$tarball" "$BASE_IMAGE" >/dev/null
}

# --- helpers -----------------------------------------------------------------------------------------
http_status() { # URL [curl args...] -> prints the status code, body in $WORK/body
    local url=$1
    shift
    curl --silent --max-time 10 --output "$WORK/body" --write-out '%{http_code}' "$@" "$url" 2>/dev/null ||
        echo 000
}

wait_ready() { # URL CONTAINER -> 0 when /readyz answers 200 within 90 s
    local url=$1 container=$2
    for _ in $(seq 1 90); do
        if [[ "$(http_status "$url")" == "200" ]]; then
            return 0
        fi
        if [[ "$(podman inspect --format '{{.State.Running}}' "$container" 2>/dev/null)" != "true" ]]; then
            return 1
        fi
        sleep 1
    done
    return 1
}

# --- main --------------------------------------------------------------------------------------------
main() {
    local started=$SECONDS
    install_tools
    configure_podman
    command -v curl >/dev/null || { log "curl is required"; exit 2; }
    [[ -x "$PYTHON" ]] || { log "no Python at $PYTHON (run make install, or set PYTHON)"; exit 2; }
    ensure_base_image

    log "building $IMAGE"
    # --layers=false: no intermediate images (the builder stage) are left behind.
    if podman build --quiet --layers=false --isolation chroot --format docker --pull=never \
        -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >"$WORK/build.log" 2>&1; then
        pass "image builds on the local Debian base ($(podman image inspect --format '{{.Size}}' "$IMAGE" |
            awk '{printf "%.0f MB", $1 / 1e6}'), $((SECONDS - started)) s so far)"
    else
        tail -n 40 "$WORK/build.log" >&2
        fail "image builds on the local Debian base"
        summary
        return
    fi

    local user
    user="$(podman image inspect --format '{{.Config.User}}' "$IMAGE")"
    if [[ -n "$user" && "$user" != "root" && "$user" != 0* ]]; then
        pass "image runs as a non-root user ($user)"
    else
        fail "image runs as a non-root user (got '$user')"
    fi

    local revision
    revision="$(podman image inspect --format '{{index .Labels "org.opencontainers.image.revision"}}' "$IMAGE")"
    if [[ "$revision" == "$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" ]]; then
        pass "OCI labels name the version and the revision ($revision)"
    else
        fail "OCI labels name the revision (got '$revision')"
    fi

    # Refuses to start without configuration (CDS_AUTH=on by default and no trusted-clients file).
    local refused_name="$NAME-unconfigured" output code=0
    CONTAINERS+=("$refused_name")
    output="$(timeout 90 podman run --name "$refused_name" --read-only "$IMAGE" 2>&1)" || code=$?
    local error_lines
    error_lines="$(grep -c 'configuration error' <<<"$output" || true)"
    if ((code != 0)) && [[ "$error_lines" == "1" ]] && grep -q 'CDS_TRUSTED_CLIENTS' <<<"$output"; then
        pass "unconfigured container refuses to start (exit $code): $(grep 'configuration error' <<<"$output")"
    else
        fail "unconfigured container refuses to start (exit $code, output: ${output:0:400})"
    fi

    # Configured container: read-only root, data volume, published on loopback only.
    local port base
    port="$("${HELPER[@]}" free-port)"
    base="http://127.0.0.1:$port"
    "${HELPER[@]}" prepare "$WORK/config" "$base"
    mkdir -p "$WORK/data"
    chown 10001:10001 "$WORK/data"
    chmod 0755 "$WORK/config"
    chmod 0644 "$WORK/config/trusted-clients.json"
    CONTAINERS+=("$NAME")
    if ! podman run -d --name "$NAME" --read-only --cap-drop=ALL --security-opt no-new-privileges \
        -p "127.0.0.1:$port:8080" \
        -v "$WORK/config/trusted-clients.json:/config/trusted-clients.json:ro" \
        -v "$WORK/data:/data" \
        -e CDS_TRUSTED_CLIENTS=/config/trusted-clients.json \
        -e CDS_PUBLIC_BASE_URL="$base" \
        -e CDS_WORKERS=2 -e CDS_THREADS=2 \
        "$IMAGE" >"$WORK/run.log" 2>&1; then
        fail "configured container starts: $(tail -n 3 "$WORK/run.log")"
        summary
        return
    fi

    # Docker's --read-only mounts no tmpfs on /tmp (podman's does): the image must bring its own writable /tmp.
    local docker_name="$NAME-docker-read-only" docker_port
    docker_port="$("${HELPER[@]}" free-port)"
    CONTAINERS+=("$docker_name")
    if podman run -d --name "$docker_name" --read-only --read-only-tmpfs=false --cap-drop=ALL \
        --security-opt no-new-privileges -p "127.0.0.1:$docker_port:8080" -e CDS_AUTH=off \
        "$IMAGE" >"$WORK/docker-run.log" 2>&1 && wait_ready "http://127.0.0.1:$docker_port/readyz" "$docker_name"; then
        pass "/readyz answers 200 under Docker's --read-only (no tmpfs on /tmp)"
    else
        fail "/readyz answers 200 under Docker's --read-only (no tmpfs on /tmp)"
        podman logs --tail 20 "$docker_name" >&2 || true
    fi
    podman rm -f -t 5 "$docker_name" >/dev/null 2>&1 || true

    if wait_ready "$base/readyz" "$NAME"; then
        pass "/readyz answers 200 with a read-only root filesystem ($((SECONDS - started)) s so far)"
    else
        fail "/readyz answers 200 with a read-only root filesystem"
        podman logs --tail 40 "$NAME" >&2 || true
        summary
        return
    fi

    local status
    status="$(http_status "$base/healthz")"
    [[ "$status" == "200" ]] && pass "/healthz answers 200" || fail "/healthz answers 200 (got $status)"

    # A signed order-sign call for an adult with epilepsy must carry the seizure-history card.
    local service="$base/cds-services/amifampridine-order-sign"
    status="$(http_status "$service" -X POST -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $(cat "$WORK/config/token.txt")" --data-binary "@$WORK/config/request.json")"
    cp "$WORK/body" "$WORK/signed-response.json"
    if [[ "$status" == "200" ]] && "${HELPER[@]}" has-card "$WORK/signed-response.json" seizure-history critical; then
        pass "signed order-sign request returns a critical seizure-history card"
    else
        fail "signed order-sign request returns a critical seizure-history card (HTTP $status: $(head -c 400 "$WORK/body"))"
    fi

    status="$(http_status "$service" -X POST -H 'Content-Type: application/json' \
        --data-binary "@$WORK/config/request.json")"
    [[ "$status" == "401" ]] && pass "unsigned request gets 401" || fail "unsigned request gets 401 (got $status)"

    status="$(http_status "$base/metrics")"
    # Exactly one call of each kind was made, whichever worker answered it; the multiprocess collector
    # (all workers) has no per-process python_gc_* series.
    if [[ "$status" == "200" ]] &&
        grep -q '^cds_requests_total{service_id="amifampridine-order-sign",status="200"} 1.0$' "$WORK/body" &&
        grep -q '^cds_requests_total{service_id="amifampridine-order-sign",status="401"} 1.0$' "$WORK/body" &&
        grep -q '^cds_jwt_failures_total{reason="missing_authorization"} 1.0$' "$WORK/body" &&
        ! grep -q '^python_gc_objects_collected_total' "$WORK/body"; then
        pass "/metrics aggregates request and JWT-failure counters across workers"
    else
        fail "/metrics aggregates request and JWT-failure counters (HTTP $status)"
    fi

    if podman healthcheck run "$NAME" >/dev/null 2>&1; then
        pass "image HEALTHCHECK succeeds"
    else
        fail "image HEALTHCHECK succeeds"
    fi

    # Graceful stop: gunicorn (PID 1) handles SIGTERM and exits well before podman's 30 s kill.
    local stop_started=$SECONDS exit_code
    # (podman may complain on stderr that there is no systemd to remove the health-check timer from)
    podman stop -t 30 "$NAME" >/dev/null 2>"$WORK/stop.log"
    exit_code="$(podman inspect --format '{{.State.ExitCode}}' "$NAME")"
    if ((SECONDS - stop_started < 25)) && [[ "$exit_code" == "0" ]]; then
        pass "SIGTERM stops the container cleanly in $((SECONDS - stop_started)) s (exit 0)"
    else
        fail "SIGTERM stops the container cleanly (took $((SECONDS - stop_started)) s, exit $exit_code)"
    fi

    # One JSON line per request, with the hook's fields and without tokens or patient data.
    podman logs "$NAME" >"$WORK/stdout.log" 2>"$WORK/stderr.log" || true
    local hook_instance token
    hook_instance="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["hookInstance"])' \
        "$WORK/config/request.json")"
    token="$(cat "$WORK/config/token.txt")"
    if grep -F "\"hookInstance\":\"$hook_instance\"" "$WORK/stdout.log" | grep -q '"cards":{' &&
        ! grep -qF -e "$token" -e "container-test-seizure" -e "1975-04-12" "$WORK/stdout.log" "$WORK/stderr.log"; then
        pass "JSON access log has the hook call's line and no token or patient data"
    else
        fail "JSON access log has the hook call's line and no token or patient data"
        tail -n 20 "$WORK/stdout.log" >&2 || true
    fi
    log "finished in $((SECONDS - started)) s"
    summary
}

summary() {
    printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
}

main "$@"
((FAILED == 0))
