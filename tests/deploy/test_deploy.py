"""deploy/: the Kubernetes CronJob, the crontab line and the Dockerfile.

The image is built only where a Docker daemon answers; elsewhere that test skips, unless
AWS_TOPOLOGY_REQUIRE_DOCKER is set, where it fails.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from engine.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFESTS = DEPLOY / "kubernetes" / "aws-topology.yaml"
SECRET_ID = "s3cr'et\"$x&/\\ !1"  # quotes, $, &, / and a backslash: nothing may mangle it


def manifests() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFESTS.read_text())}


def test_manifests_pass_the_kubernetes_schemas() -> None:
    version = kubernetes_validate.utils.latest_version()
    docs = list(yaml.safe_load_all(MANIFESTS.read_text()))
    kinds = ["ServiceAccount", "ConfigMap", "Secret", "PersistentVolumeClaim", "CronJob"]
    assert [d["kind"] for d in docs] == kinds
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any schema violation


def test_schema_validation_is_real() -> None:
    cronjob = manifests()["CronJob"]
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cronjob, kubernetes_validate.utils.latest_version(), strict=True)


def test_cronjob_uses_pod_identity_the_configmap_and_the_secret() -> None:
    docs = manifests()
    annotations = docs["ServiceAccount"]["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    job = docs["CronJob"]["spec"]
    assert job["schedule"] == "* * * * *" and job["concurrencyPolicy"] == "Forbid"
    pod = job["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    secret = docs["Secret"]["metadata"]["name"]
    assert env["EXTERNAL_ID"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "external-id"}
    assert env["STS_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "sts-api-key"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert "persistentVolumeClaim" in volumes["state"]
    conf = yaml.safe_load(docs["ConfigMap"]["data"]["conf.yaml"])
    assert conf["init_config"]["aws_access_key_id"] == conf["init_config"]["aws_secret_access_key"] == ""


def run_container_command(docs: dict[str, dict[str, Any]], env: dict[str, str], tmp_path: Path) -> list[str]:
    """The CronJob container's shell command, run for real with its paths moved under tmp_path and a stand-in
    aws-topology that writes its argv to tmp_path/args (returned) and its environment to tmp_path/env. The
    private config is tmp_path/c.yaml."""
    (container,) = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    (script,) = container["args"]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "conf.yaml").write_text(docs["ConfigMap"]["data"]["conf.yaml"])
    script = script.replace("/etc/aws-topology/", f"{tmp_path}/etc/")
    script = script.replace("/tmp/conf.yaml", f"{tmp_path}/c.yaml")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "aws-topology"
    args, env_out = (shlex.quote(str(tmp_path / name)) for name in ("args", "env"))
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {args}\nenv > {env_out}\n')
    fake.chmod(0o755)
    python = shutil.which("python", path=str(Path(sys.executable).parent))
    assert python
    os.symlink(python, bin_dir / "python")
    subprocess.run(["/bin/sh", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env}, check=True,
                   timeout=60)  # fmt: skip
    return (tmp_path / "args").read_text().split("\n")[:-1]


def test_container_command_puts_the_secret_external_id_into_a_private_config(tmp_path: Path) -> None:
    """The container's shell command, run with its paths moved under tmp_path and a stand-in aws-topology."""
    env = {"EXTERNAL_ID": SECRET_ID, "STS_RECEIVER_URL": "https://r.example/x"}
    argv = run_container_command(manifests(), env, tmp_path)
    rendered = tmp_path / "c.yaml"
    assert stat.S_IMODE(rendered.stat().st_mode) == 0o600
    config = load_config(rendered)
    assert config.external_id == SECRET_ID
    assert argv[:5] == ["run", "-c", str(rendered), "--receiver", "https://r.example/x"]


def test_crontab_line_runs_the_job_every_minute() -> None:
    lines = [ln for ln in (DEPLOY / "crontab").read_text().splitlines() if ln and not ln.startswith("#")]
    (line,) = lines
    fields = line.split(None, 6)
    assert fields[:5] == ["*"] * 5 and fields[5] == "aws-topology"  # /etc/cron.d format: schedule, user
    command = fields[6]
    assert re.search(r"aws-topology run -c \S+ --receiver https://\S+ --state \S+", command)
    assert 'STS_API_KEY="$(cat /etc/aws-topology/api-key)"' in command  # the key is not in the crontab


def test_dockerfile_installs_the_wheel_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert [s.split()[0] for s in stages] == ["node:22-slim", "python:3.11-slim", "python:3.11-slim"]
    final = stages[-1]
    assert "pip install --no-cache-dir /dist/*.whl" in final
    assert not re.search(r"^COPY (?!--from=build)", final, flags=re.M)  # nothing of the source tree
    assert re.search(r"^USER 10001", final, flags=re.M)
    assert 'ENTRYPOINT ["aws-topology"]' in final


def _docker_daemon() -> str | None:
    """Why no image can be built here, or None when a Docker daemon answers."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return None if info.returncode == 0 else "no Docker daemon answers (`docker info` failed)"


def test_docker_image_builds_and_runs_validate(tmp_path: Path) -> None:
    reason = _docker_daemon()
    if reason and os.environ.get("AWS_TOPOLOGY_REQUIRE_DOCKER"):
        pytest.fail(f"Docker image build not tested: {reason} (AWS_TOPOLOGY_REQUIRE_DOCKER is set)")
    if reason:
        pytest.skip(f"Docker image build not tested: {reason}")
    tag = "aws-topology-test:latest"
    subprocess.run(["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(ROOT)], check=True,
                   timeout=900)  # fmt: skip
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(yaml.safe_load(manifests()["ConfigMap"]["data"]["conf.yaml"])))
    conf.chmod(0o644)
    run = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{conf}:/etc/aws-topology/conf.yaml:ro", tag,
         "validate", "-c", "/etc/aws-topology/conf.yaml"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok: 1 account(s)")
    user = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert user.stdout.strip() == "10001"


@pytest.mark.live
def test_uninstall_query_empties_a_versioned_bucket_of_more_than_1000_versions() -> None:
    """The JMESPath of docs/aws-setup.md's uninstall loop, over list-object-versions pages, deletes every
    version and delete marker of a bucket holding 1,800 of them, 1,000 per DeleteObjects at most."""
    import boto3
    import jmespath

    from tests.support import live_aws, moto_server

    doc = (ROOT / "docs" / "aws-setup.md").read_text()
    query = re.search(r"--query '(\{Objects: .*?\})'\)", doc).group(1)  # type: ignore[union-attr]
    with moto_server() as endpoint, live_aws(endpoint):
        s3, bucket = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint), "stackstate-logs-1"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        for n in range(600):
            for body in (b"1", b"2"):
                s3.put_object(Bucket=bucket, Key=f"AWSLogs/o{n}", Body=body)
            s3.delete_object(Bucket=bucket, Key=f"AWSLogs/o{n}")  # a delete marker
        sizes = []
        while True:
            page = s3.list_object_versions(Bucket=bucket, MaxKeys=1000)
            batch = jmespath.search(query, page)
            if not batch["Objects"]:
                break
            sizes.append(len(batch["Objects"]))
            s3.delete_objects(Bucket=bucket, Delete=batch)
        assert sum(sizes) == 1800 and max(sizes) <= 1000 and len(sizes) >= 2
        s3.delete_bucket(Bucket=bucket)  # only an empty bucket can be deleted
