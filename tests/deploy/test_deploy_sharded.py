"""deploy/kubernetes/aws-topology-sharded.yaml: N shards as an Indexed CronJob, the state in PostgreSQL."""

from __future__ import annotations

import stat
import urllib.parse
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from engine.core.config import load_config
from engine.core.errors import EXIT_BAD_INPUT
from tests.deploy.test_deploy import DEPLOY, SECRET_ID, manifests, run_container_command

SHARDED = DEPLOY / "kubernetes" / "aws-topology-sharded.yaml"
KINDS = ["ServiceAccount", "ConfigMap", "Secret", "CronJob", "Service", "StatefulSet"]


def documents() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(SHARDED.read_text()))


def sharded() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in documents()}


def job_spec(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return docs["CronJob"]["spec"]["jobTemplate"]["spec"]


def container_env(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (container,) = job_spec(docs)["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def resolved_env(docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The container's environment as Kubernetes fills it in: literal values and the Secret's keys."""
    secret, env = docs["Secret"], {}
    for name, entry in container_env(docs).items():
        if "value" in entry:
            env[name] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            env[name] = secret["stringData"][ref["key"]]
    return env


def test_every_document_passes_the_kubernetes_schemas() -> None:
    version = kubernetes_validate.utils.latest_version()
    docs = documents()
    assert [d["kind"] for d in docs] == KINDS
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any schema violation


def test_schema_validation_catches_a_misspelled_job_field() -> None:
    cronjob = sharded()["CronJob"]
    spec = cronjob["spec"]["jobTemplate"]["spec"]
    spec["backoffLimitPerIndx"] = spec.pop("backoffLimitPerIndex")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cronjob, kubernetes_validate.utils.latest_version(), strict=True)


def test_cronjob_runs_n_indexed_shards_one_run_at_a_time() -> None:
    docs = sharded()
    assert docs["CronJob"]["spec"]["concurrencyPolicy"] == "Forbid"
    job = job_spec(docs)
    assert job["completionMode"] == "Indexed"
    shards = int(container_env(docs)["AWS_TOPOLOGY_SHARDS"]["value"])
    assert shards >= 2 and job["completions"] == job["parallelism"] == shards
    assert isinstance(job["backoffLimitPerIndex"], int) and job["backoffLimitPerIndex"] >= 1
    assert 0 <= job["maxFailedIndexes"] < shards
    assert "backoffLimit" not in job  # it would cap the retries of all shards together
    assert job["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it
    rules = {rule["action"]: rule for rule in job["podFailurePolicy"]["rules"]}
    assert rules["FailIndex"]["onExitCodes"] == {
        "containerName": "aws-topology", "operator": "In", "values": [EXIT_BAD_INPUT],
    }  # fmt: skip
    assert rules["Ignore"]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert job["activeDeadlineSeconds"] > 0
    labels = docs["CronJob"]["spec"]["jobTemplate"]["metadata"]["labels"]
    assert labels == job["template"]["metadata"]["labels"] == {"app.kubernetes.io/name": "aws-topology"}


def test_shards_keep_no_state_of_their_own_and_no_plaintext_secret() -> None:
    docs = sharded()
    pod = job_spec(docs)["template"]["spec"]
    assert all("persistentVolumeClaim" not in v for v in pod["volumes"])
    assert "PersistentVolumeClaim" not in docs
    env = container_env(docs)
    secret = docs["Secret"]
    for name, key in [
        ("AWS_TOPOLOGY_STATE", "state-url"), ("PGPASSWORD", "postgres-password"),
        ("EXTERNAL_ID", "external-id"), ("STS_API_KEY", "sts-api-key"),
    ]:  # fmt: skip
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": key}
    assert secret["stringData"]["state-url"].startswith("postgresql://")
    cronjob = yaml.safe_dump(docs["CronJob"])
    for value in secret["stringData"].values():
        assert value not in cronjob
    (container,) = pod["containers"]
    assert "--state" not in container["args"][0] and "--shard" not in container["args"][0]


def test_shards_have_the_single_pods_identity_and_hardening() -> None:
    docs = sharded()
    single = manifests()
    assert docs["ServiceAccount"] == single["ServiceAccount"]
    pod, single_pod = (job_spec(d)["template"]["spec"] for d in (docs, single))
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    assert pod["securityContext"] == single_pod["securityContext"]
    (container,), (single_container,) = pod["containers"], single_pod["containers"]
    assert container["securityContext"] == single_container["securityContext"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert {v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v} == {
        "config": docs["ConfigMap"]["metadata"]["name"]
    }
    conf = yaml.safe_load(docs["ConfigMap"]["data"]["conf.yaml"])
    assert conf["init_config"]["aws_access_key_id"] == conf["init_config"]["aws_secret_access_key"] == ""
    assert len(conf["instances"]) >= 2


def test_container_command_runs_the_shard_with_the_state_from_the_environment(tmp_path: Path) -> None:
    """The shell command, run for real with the environment Kubernetes would give pod 2 (a stand-in
    aws-topology): a private config holding the ExternalId, then `run` with the receiver and nothing else."""
    docs = sharded()
    env = resolved_env(docs) | {"EXTERNAL_ID": SECRET_ID, "JOB_COMPLETION_INDEX": "2"}
    argv = run_container_command(docs, env, tmp_path)
    rendered = tmp_path / "c.yaml"
    assert argv == ["run", "-c", str(rendered), "--receiver", env["STS_RECEIVER_URL"]]
    assert stat.S_IMODE(rendered.stat().st_mode) == 0o600
    assert load_config(rendered).external_id == SECRET_ID
    seen = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    secret = docs["Secret"]["stringData"]
    assert seen["AWS_TOPOLOGY_STATE"] == secret["state-url"]
    assert seen["PGPASSWORD"] == secret["postgres-password"]
    assert seen["AWS_TOPOLOGY_SHARDS"] == str(job_spec(docs)["completions"])
    assert seen["JOB_COMPLETION_INDEX"] == "2" and seen["STS_API_KEY"] == secret["sts-api-key"]


def test_the_minimal_postgresql_is_the_one_the_state_url_names() -> None:
    docs = sharded()
    url = urllib.parse.urlsplit(docs["Secret"]["stringData"]["state-url"])
    service, statefulset = docs["Service"], docs["StatefulSet"]["spec"]
    assert url.hostname == service["metadata"]["name"] == statefulset["serviceName"]
    (port,) = service["spec"]["ports"]
    assert url.port == port["port"] and url.password is None  # the password comes from PGPASSWORD
    pod = statefulset["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert statefulset["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert url.username == env["POSTGRES_USER"]["value"] and url.path == "/" + env["POSTGRES_DB"]["value"]
    secret = docs["Secret"]["metadata"]["name"]
    ref = {"name": secret, "key": "postgres-password"}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    assert {p["containerPort"] for p in container["ports"]} == {5432}
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    (claim,) = statefulset["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    data = mounts[claim["metadata"]["name"]]
    assert env["PGDATA"]["value"].startswith(data + "/")  # a folder of the volume: the server may create it
    assert "managed PostgreSQL (RDS)" in SHARDED.read_text()


@pytest.mark.parametrize("docs", [manifests, sharded], ids=["one-pod", "sharded"])
def test_tmp_holds_the_scans_spill_files_on_disk_not_in_the_pods_memory(docs: Any) -> None:
    """The scan keeps finished units in temporary files (`Spill`, under /tmp): a memory-backed or tiny /tmp
    would fail a large account's scan, or count its spill against the memory limit."""
    pod = docs()["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "medium" not in volume["emptyDir"]
    size = volume["emptyDir"]["sizeLimit"]
    assert size.endswith("Gi") and int(size[:-2]) >= 1
