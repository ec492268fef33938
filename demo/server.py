"""Run and control a moto server on 127.0.0.1 for demos and live tests.

Usage: ``python -m demo.server --port 5000`` serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from types import FrameType

from moto.server import ThreadedMotoServer

HOST = "127.0.0.1"

# One cheap read-only call per service that demo.seed touches; see warm().
_WARM_CALLS: dict[str, tuple[str, dict[str, object]]] = {
    "ec2": ("describe_regions", {"RegionNames": ["us-east-1"]}),
    "s3": ("list_buckets", {}),
    "sqs": ("list_queues", {}),
    "sns": ("list_topics", {}),
    "sts": ("get_caller_identity", {}),
    "iam": ("list_roles", {}),
    "dynamodb": ("list_tables", {}),
    "dynamodbstreams": ("list_streams", {}),
    "kinesis": ("list_streams", {}),
    "firehose": ("list_delivery_streams", {}),
    "rds": ("describe_db_instances", {}),
    "redshift": ("describe_clusters", {}),
    "lambda": ("list_functions", {}),
    "elb": ("describe_load_balancers", {}),
    "elbv2": ("describe_load_balancers", {}),
    "autoscaling": ("describe_auto_scaling_groups", {}),
    "ecs": ("list_clusters", {}),
    "servicediscovery": ("list_namespaces", {}),
    "apigateway": ("get_rest_apis", {}),
    "apigatewayv2": ("get_apis", {}),
    "stepfunctions": ("list_state_machines", {}),
    "cloudformation": ("list_stacks", {}),
    "route53": ("list_hosted_zones", {}),
    "route53domains": ("list_domains", {}),
}
# DynamoDB stream label (and so LatestStreamArn) that moto would otherwise take from the wall clock.
STREAM_LABEL = "2024-01-01T00:00:00.000"


def _post(url: str, timeout: float = 60.0) -> None:
    """POST an empty body to ``url``; urllib raises on a non-2xx answer."""
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def wait_ready(endpoint: str, timeout: float = 20) -> None:
    """Poll the moto control API until the server answers; raise TimeoutError otherwise."""
    url = f"{endpoint.rstrip('/')}/moto-api/config"
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError as exc:
            last_error = exc
            time.sleep(0.1)
    raise TimeoutError(f"moto server at {endpoint} not ready after {timeout}s: {last_error}")


def reset(endpoint: str, seed: int | None = 42) -> None:
    """Wipe all moto state, then seed moto's id generator so ids are deterministic.

    A reset rebuilds every backend moto has made: on a loaded machine that takes seconds, hence the minute."""
    base = endpoint.rstrip("/")
    _post(f"{base}/moto-api/reset")
    if seed is not None:
        _post(f"{base}/moto-api/seed?a={int(seed)}")


def warm(endpoint: str) -> None:
    """Make one read-only call per seeded service so moto builds each service's app now.

    moto server builds a service's Flask app on the first request for it and, while doing
    so, instantiates that service's us-east-1 backend (EC2 creates a default VPC with random
    ids). When that first request comes after ``reset(seed=...)`` it shifts the seeded id
    stream, so a fresh server would hand out different ids than a reused one. Warming before
    the first reset makes seeded ids the same on fresh and reused servers.

    The services only a samples file seeds (mappings/samples/*.yaml) are warmed after these, with a call
    derived from their mapping file or botocore's model (``demo.samples.warm_calls``); as moto may not
    answer that call, its error is ignored: the request alone builds the app.
    """
    import boto3  # only the warm-up needs boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from demo.samples import warm_calls

    derived = warm_calls(set(_WARM_CALLS))
    for service, (operation, kwargs) in {**_WARM_CALLS, **derived}.items():
        client = boto3.client(
            service,
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        try:
            getattr(client, operation)(**kwargs)
        except (BotoCoreError, ClientError):
            if service not in derived:
                raise


def _fixed_stream_label() -> None:
    """Make moto label every DynamoDB stream ``STREAM_LABEL`` instead of the current time.

    The label is part of the stream ARN, which the demo estate and the scan output carry, so a
    wall-clock label would make two seeds differ. Real labels are creation timestamps of this shape.
    """
    from moto.dynamodb.models.table import Table

    original = Table.set_stream_specification
    if getattr(original, "demo_patched", False):
        return

    def set_stream_specification(self: Table, streams: dict | None) -> None:
        original(self, streams)
        if self.latest_stream_label:
            self.latest_stream_label = STREAM_LABEL

    set_stream_specification.demo_patched = True  # type: ignore[attr-defined]
    Table.set_stream_specification = set_stream_specification  # type: ignore[method-assign]


def _redshift_vpc_id() -> None:
    """Give moto's Redshift clusters the VpcId of their cluster subnet group, as AWS reports it.

    moto 5.2.5 never fills ``VpcId`` in describe_clusters (the model has no such attribute), so the
    StackPack's cluster -> VPC relation could not be seen. Clusters without a subnet group keep none.
    """
    from moto.redshift.models import Cluster

    if hasattr(Cluster, "vpc_id"):
        return

    def vpc_id(self: Cluster) -> str | None:
        if not self.cluster_subnet_group_name:
            return None
        groups = self.redshift_backend.describe_cluster_subnet_groups(self.cluster_subnet_group_name)
        return groups[0].vpc_id

    Cluster.vpc_id = property(vpc_id)  # type: ignore[attr-defined]


def _lambda_vpc_id() -> None:
    """Give moto's Lambda functions the VpcId of their first subnet, as AWS reports it.

    moto 5.2.5 answers a fixed ``vpc-123abc`` for every function in a VPC, so the function -> VPC
    relation pointed at no component. A subnet moto does not know keeps moto's answer.
    """
    from moto.awslambda.models import LambdaFunction
    from moto.ec2.exceptions import InvalidSubnetIdError
    from moto.ec2.models import ec2_backends

    original = LambdaFunction.vpc_config
    if getattr(original.fget, "demo_patched", False):
        return

    def vpc_config(self: LambdaFunction) -> dict | None:
        config = original.fget(self)
        if config and config.get("SubnetIds"):
            try:
                subnet = ec2_backends[self.account_id][self.region].get_subnet(config["SubnetIds"][0])
            except InvalidSubnetIdError:
                return config
            config["VpcId"] = subnet.vpc_id
        return config

    vpc_config.demo_patched = True  # type: ignore[attr-defined]
    LambdaFunction.vpc_config = property(vpc_config)  # type: ignore[assignment, method-assign]


def _nested_stack_physical_id() -> None:
    """Make a nested stack's PhysicalResourceId its stack ARN, as AWS reports it (moto 5.2.5: its name)."""
    from moto.cloudformation.models import Stack

    if getattr(Stack.physical_resource_id.fget, "demo_patched", False):
        return

    def physical_resource_id(self: Stack) -> str:
        return self.stack_id

    physical_resource_id.demo_patched = True  # type: ignore[attr-defined]
    Stack.physical_resource_id = property(physical_resource_id)  # type: ignore[assignment, method-assign]


def _complete_reset() -> None:
    """Make ``/moto-api/reset`` drop backends that other backends re-create while being reset.

    moto resets a backend by re-running its ``__init__``. Some of those (Redshift, Auto Scaling)
    look up the EC2 backend of their region; when EC2 was already cleared, that lookup builds a new
    EC2 backend, with a default VPC whose ids come from the *unseeded* generator, and it survives
    the reset. The default VPC of us-east-1 then differed from run to run. Clearing every backend
    that existed before the reset once more, after it, leaves nothing behind.
    """
    from moto.core.base_backend import BackendDict, backend_lock

    original = BackendDict.reset.__func__  # type: ignore[attr-defined]
    if getattr(original, "demo_patched", False):
        return

    def reset(cls: type[BackendDict]) -> None:
        with backend_lock:
            known = list(BackendDict._instances)
            original(cls)
            for backend in known:
                backend.clear()
            BackendDict._instances.clear()

    reset.demo_patched = True  # type: ignore[attr-defined]
    BackendDict.reset = classmethod(reset)  # type: ignore[method-assign, assignment]


def _domain_tags() -> None:
    """Answer Route 53 Domains ListTagsForDomain / UpdateTagsForDomain, which moto 5.2.5 lacks.

    Without them every ListTagsForDomain is an HTML 500, so the domain type could never complete.
    Tags live on the domain object, as on AWS; an unknown domain is moto's own error.
    """
    from moto.route53domains.responses import Route53DomainsResponse

    if hasattr(Route53DomainsResponse, "list_tags_for_domain"):
        return

    def _domain(self: Route53DomainsResponse) -> object:
        return self.route53domains_backend.get_domain(domain_name=self._get_param("DomainName"))

    def list_tags_for_domain(self: Route53DomainsResponse) -> str:
        tags = getattr(_domain(self), "demo_tags", {})
        return json.dumps({"TagList": [{"Key": k, "Value": v} for k, v in tags.items()]})

    def update_tags_for_domain(self: Route53DomainsResponse) -> str:
        domain = _domain(self)
        tags = dict(getattr(domain, "demo_tags", {}))
        tags.update({t["Key"]: t.get("Value", "") for t in self._get_param("TagsToUpdate") or []})
        domain.demo_tags = tags  # type: ignore[attr-defined]
        return "{}"

    Route53DomainsResponse.list_tags_for_domain = list_tags_for_domain  # type: ignore[attr-defined]
    Route53DomainsResponse.update_tags_for_domain = update_tags_for_domain  # type: ignore[attr-defined]


def patch_moto() -> None:
    """Apply the demo's moto adjustments (idempotent): complete resets, stream labels, Redshift and
    Lambda VpcIds, nested stacks' physical ids, Route 53 Domains tags."""
    _complete_reset()
    _fixed_stream_label()
    _redshift_vpc_id()
    _lambda_vpc_id()
    _nested_stack_physical_id()
    _domain_tags()


def _check_port_free(port: int) -> None:
    """Raise OSError if ``port`` cannot be bound; moto's start() would otherwise wait forever."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot start moto server on {HOST}:{port}: {exc.strerror}") from exc


def start(port: int = 0) -> tuple[ThreadedMotoServer, str]:
    """Start a warmed, patched (see patch_moto) moto server thread on 127.0.0.1; return it and its URL.

    With ``port=0`` the OS assigns a free port when the socket is bound, which avoids
    the race between probing for a free port and binding it.
    """
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # it logs every request otherwise
    patch_moto()
    if port:
        _check_port_free(port)
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    endpoint = f"http://{HOST}:{server.get_host_and_port()[1]}"
    wait_ready(endpoint)
    warm(endpoint)
    return server, endpoint


def main(argv: list[str] | None = None) -> int:
    """Serve moto in the foreground until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m demo.server", description=__doc__)
    parser.add_argument("--port", type=int, default=5000, help="port to bind (0 = any free port)")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    try:
        server, endpoint = start(args.port)
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(endpoint, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: freeing a large moto state takes seconds after SIGTERM.
    os._exit(code)
