"""Shared pieces of the demo seeders: boto3 clients for moto, tag helpers, small creators, moto control.

Everything here is deterministic: no wall-clock input, fixed names and fixed idempotency tokens, so that
after ``demo.server.reset(endpoint, seed=N)`` the same calls in the same order give the same ids.
"""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile
from typing import Any

import boto3
from botocore.config import Config

DEFAULT_ACCOUNT = "123456789012"
MAIN_REGION = "eu-west-1"
SECOND_REGION = "us-east-1"
# Amazon Linux 2 image from moto's built-in AMI catalogue (present in every region).
AMI_ID = "ami-04681a1dbd79675a5"

_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=16)
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)  # fixed mtime: the zip bytes (and CodeSha256) never change


def client(service: str, region: str, endpoint: str, account: str = DEFAULT_ACCOUNT) -> Any:
    """Return a boto3 client for the moto ``endpoint``, acting in ``account``.

    The dummy credentials map to moto's default account; any other account is selected
    with moto's ``x-moto-account-id`` request header.
    """
    aws = boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=_CONFIG,
    )
    if account != DEFAULT_ACCOUNT:

        def _add_account_header(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = account

        aws.meta.events.register("before-sign.*.*", _add_account_header)
    return aws


def moto_post(endpoint: str, path: str, body: dict[str, Any]) -> None:
    """POST a JSON body to moto's control API, e.g. ``/moto-api/config``."""
    request = urllib.request.Request(
        f"{endpoint.rstrip('/')}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def configure_moto(endpoint: str) -> None:
    """Lambda without docker (a stub runtime), and ECS tasks that stay RUNNING when described.

    moto moves a task one state on per describe unless its transition is made 'manual'.
    Both settings survive ``/moto-api/reset``; they are set on every seed anyway.
    """
    moto_post(endpoint, "/moto-api/config", {"lambda": {"use_docker": False}})
    moto_post(
        endpoint,
        "/moto-api/state-manager/set-transition",
        {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}},
    )


def tags(**values: str) -> list[dict[str, str]]:
    """Return EC2/SNS-style ``[{Key, Value}]`` tags, keeping keyword order."""
    return [{"Key": key, "Value": value} for key, value in values.items()]


def lower_tags(values: dict[str, str]) -> list[dict[str, str]]:
    """Return ``[{key, value}]`` tags as ECS and Step Functions spell them."""
    return [{"key": key, "value": value} for key, value in values.items()]


def spec(resource_type: str, values: dict[str, str]) -> list[dict[str, Any]]:
    """Return an EC2 ``TagSpecifications`` list for one resource type."""
    return [{"ResourceType": resource_type, "Tags": tags(**values)}]


def queue(sqs: Any, name: str, tag_map: dict[str, str] | None = None, **attributes: str) -> tuple[str, str]:
    """Create an SQS queue and return ``(url, arn)``."""
    kwargs: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if tag_map:
        kwargs["tags"] = tag_map
    url = sqs.create_queue(**kwargs)["QueueUrl"]
    return url, queue_arn(sqs, url)


def queue_arn(sqs: Any, url: str) -> str:
    """Return the ARN of the queue at ``url``."""
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def allow_topic(sqs: Any, queue_url: str, arn: str, topic_arn: str) -> None:
    """Attach the queue policy that lets an SNS topic deliver to the queue, as in real AWS."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowTopic",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})


def bucket(s3: Any, name: str, region: str, tag_map: dict[str, str] | None = None) -> None:
    """Create an S3 bucket in ``region`` (no LocationConstraint for us-east-1) and tag it."""
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    if tag_map:
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags(**tag_map)})


def instance(ec2: Any, name: str, token: str, **kwargs: Any) -> str:
    """Run one instance with a fixed ClientToken (botocore would send a random one) and return its id."""
    tag_map = {"Name": name, **kwargs.pop("Tags", {})}
    reservation = ec2.run_instances(
        ImageId=AMI_ID,
        MinCount=1,
        MaxCount=1,
        ClientToken=token,
        TagSpecifications=spec("instance", tag_map),
        **kwargs,
    )
    return reservation["Instances"][0]["InstanceId"]


def lambda_zip(source: str) -> bytes:
    """Return a zip holding ``index.py`` with a fixed mtime, so its bytes and hash never change."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("index.py", date_time=_ZIP_DATE), source)
    return buffer.getvalue()


def trust_policy(service: str) -> str:
    """Return an IAM trust policy (JSON) letting ``service``, e.g. ``lambda.amazonaws.com``, assume a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )
