"""deploy/kubernetes: every manifest is valid for Kubernetes, and the Deployment keeps its promises."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

MANIFESTS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "kubernetes").glob("*.yaml"))
K8S_VERSION = "1.30.0"  # oldest release we support; the schemas used here are stable since 1.23


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in documents(path):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def test_manifests_exist() -> None:
    kinds = {key.split("/")[0] for key in by_kind()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap"} <= kinds


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", [K8S_VERSION, kubernetes_validate.latest_version()])
def test_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    for doc in documents(path):
        # strict: unknown fields (typos such as "readinesProbe") fail too
        kubernetes_validate.validate(doc, version, strict=True)


def deployment() -> dict[str, Any]:
    return by_kind()["Deployment/cds-service"]


def container(name: str = "cds-service") -> dict[str, Any]:
    pod = deployment()["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] + pod.get("initContainers", []) if c["name"] == name)


def test_probes_use_healthz_and_readyz() -> None:
    main = container()
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_runs_non_root_read_only_without_privileges() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    for name in ("cds-service", "site-knowledge"):
        security = container(name)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert "memory" in container(name)["resources"]["limits"]
        assert {"cpu", "memory"} <= set(container(name)["resources"]["requests"])
    mounts = {m["mountPath"] for m in container()["volumeMounts"]}
    assert {"/tmp", "/data"} <= mounts  # writable places a read-only root needs


def env_of(name: str = "cds-service") -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(name)["env"]}


def test_database_url_comes_from_a_secret_and_auth_stays_on() -> None:
    env = env_of()
    assert env["CDS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "cds-service-database",
        "key": "url",
    }
    assert "value" not in env["CDS_DATABASE_URL"]
    assert env["CDS_AUTH"]["value"] == "on"


def mounted_configmaps() -> dict[str, str]:
    """ConfigMap name -> mount path in the main container or the init container."""
    pod = deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    mounts: dict[str, str] = {}
    for c in pod["containers"] + pod["initContainers"]:
        for mount in c.get("volumeMounts", []):
            if mount["name"] in volumes:
                mounts[volumes[mount["name"]]] = mount["mountPath"]
    return mounts


def test_trusted_clients_file_is_mounted_where_the_env_points() -> None:
    manifests = by_kind()
    config_map = manifests["ConfigMap/cds-service-trusted-clients"]
    [filename] = config_map["data"]
    clients = yaml.safe_load(config_map["data"][filename])["clients"]
    assert clients and all("iss" in c for c in clients)
    mount = mounted_configmaps()["cds-service-trusted-clients"]
    assert env_of()["CDS_TRUSTED_CLIENTS"]["value"] == f"{mount}/{filename}"


def test_site_knowledge_reaches_the_directory_the_service_reads() -> None:
    assert "ConfigMap/cds-service-site-knowledge" in by_kind()
    files = mounted_configmaps()["cds-service-site-knowledge"]
    init = container("site-knowledge")
    assert files in " ".join(init["command"])
    site_dir = env_of()["CDS_SITE_KNOWLEDGE"]["value"]
    assert site_dir in {m["mountPath"] for m in init["volumeMounts"]}
    assert site_dir in {m["mountPath"] for m in container()["volumeMounts"]}
    # The shipped knowledge is the image's own: nothing is laid over it.
    assert "CDS_CARDS_DIR" not in env_of()


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    manifests = by_kind()
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    service_selector = manifests["Service/cds-service"]["spec"]["selector"]
    pdb_selector = manifests["PodDisruptionBudget/cds-service"]["spec"]["selector"]["matchLabels"]
    assert service_selector.items() <= labels.items()
    assert pdb_selector.items() <= labels.items()
    assert manifests["Service/cds-service"]["spec"]["ports"][0]["targetPort"] == "http"
    target = manifests["HorizontalPodAutoscaler/cds-service"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "cds-service")
    assert manifests["HorizontalPodAutoscaler/cds-service"]["spec"]["minReplicas"] >= 2  # PDB minAvailable 1


def test_grace_period_covers_drain_timeouts() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    env = env_of()
    pre_stop = int(container()["lifecycle"]["preStop"]["exec"]["command"][-1])
    graceful = int(env["CDS_GRACEFUL_TIMEOUT"]["value"])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + graceful + 5  # + audit drain (5 s default)


NAMESPACE = "cds-service"
WORKLOADS = ("Deployment/cds-service", "Job/cds-service-migrate", "CronJob/cds-service-purge")


def pod_spec(key: str) -> dict[str, Any]:
    spec = by_kind()[key]["spec"]
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def test_everything_lives_in_its_own_restricted_namespace() -> None:
    manifests = by_kind()
    namespace = manifests[f"Namespace/{NAMESPACE}"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for key, doc in manifests.items():
        if not key.startswith("Namespace/"):
            assert doc["metadata"].get("namespace") == NAMESPACE, key


def test_schema_changes_only_in_the_migration_job() -> None:
    deployment_env = env_of()
    assert deployment_env["CDS_DB_AUTO_UPGRADE"]["value"] == "false"
    [migrate] = pod_spec("Job/cds-service-migrate")["containers"]
    assert migrate["args"] == ["db", "upgrade"]
    admin_secret = {e["name"]: e for e in migrate["env"]}["CDS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    runtime_secret = deployment_env["CDS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    # The runtime role is not the one that owns the schema.
    assert admin_secret["name"] != runtime_secret["name"]


def test_audit_retention_runs_nightly_one_at_a_time() -> None:
    cronjob = by_kind()["CronJob/cds-service-purge"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    [purge] = pod_spec("CronJob/cds-service-purge")["containers"]
    assert purge["args"] == ["purge"]
    assert {e["name"]: e for e in purge["env"]}["CDS_DB_AUTO_UPGRADE"]["value"] == "false"


@pytest.mark.parametrize("key", WORKLOADS)
def test_every_workload_is_locked_down_and_pinned_by_digest(key: str) -> None:
    pod = pod_spec(key)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    images = set()
    for c in pod["containers"] + pod.get("initContainers", []):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert "@sha256:" in c["image"], f"{key}/{c['name']} is not pinned by digest"
        images.add(c["image"])
    assert images == {container()["image"]}  # one release everywhere


def test_cpu_request_is_one_cpu_per_worker() -> None:
    workers = int(env_of()["CDS_WORKERS"]["value"])
    requested = str(container()["resources"]["requests"]["cpu"])
    cpus = int(requested[:-1]) / 1000 if requested.endswith("m") else float(requested)
    assert cpus == workers


def test_network_policy_admits_only_the_ingress_and_the_scraper() -> None:
    policy = by_kind()["NetworkPolicy/cds-service-api"]["spec"]
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [rule] = policy["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["http"]
    https = [r for r in policy["egress"] if any(p["port"] == 443 for p in r["ports"])]
    assert https and all("169.254.0.0/16" in r["to"][0]["ipBlock"]["except"] for r in https)


CHECKOV = Path(__file__).resolve().parents[2] / ".venv" / "checkov" / "bin" / "checkov"


def test_policy_linter_finds_nothing_beyond_the_written_exceptions() -> None:
    if not CHECKOV.exists():
        pytest.skip(f"checkov is not installed at {CHECKOV} (make install sets it up)")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [str(CHECKOV), "--config-file", "deploy/checkov.yaml", "--output", "json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 100  # the scan really ran over every manifest
