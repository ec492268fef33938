"""Seed a moto server with a deterministic demo estate, or with bulk resources for benchmarks.

Usage: ``python -m demo.seed --endpoint http://127.0.0.1:5000 [--bulk 2000] [--wait 30]``.

The estate holds at least one resource of every component type of the StackState AWS StackPack, with
every relation the StackPack draws present in the AWS data; see :func:`seed_estate`. The pieces live
in ``demo.estate_core`` (EC2/S3/SQS/SNS), ``demo.estate_data``, ``demo.estate_compute`` and
``demo.estate_apps``; the bulk seeder in ``demo.bulk``. The command line then seeds every samples file
(mappings/samples/*.yaml, sorted by name: ``demo.samples``), so the demo shows every mapped service;
``seed_estate`` alone seeds the core estate, which the shared cassettes were recorded on.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from demo import estate_apps, estate_compute, estate_core, estate_data
from demo.bulk import seed_bulk
from demo.common import AMI_ID, DEFAULT_ACCOUNT, MAIN_REGION, SECOND_REGION, client, configure_moto
from demo.samples import seed_samples, shipped
from demo.server import reset, wait_ready

__all__ = ["AMI_ID", "DEFAULT_ACCOUNT", "client", "main", "seed_bulk", "seed_estate"]

Step = Callable[[str, str, dict[str, Any]], None]

# Order matters: each step may use ids of earlier ones, and moto draws seeded ids in call order.
# The core steps come first so their ids stay those of recordings made before the estate grew.
STEPS: tuple[Step, ...] = (
    estate_core.seed_main_region,
    estate_core.seed_second_region,
    estate_data.seed_roles,
    estate_data.seed_dynamodb,
    estate_data.seed_kinesis,
    estate_data.seed_firehose,
    estate_data.seed_rds,
    estate_data.seed_redshift,
    estate_compute.seed_nat_gateway,
    estate_compute.seed_ecs_host,
    estate_compute.seed_lambda,
    estate_compute.seed_elb_classic,
    estate_compute.seed_elbv2,
    estate_compute.seed_autoscaling,
    estate_compute.seed_ecs,
    estate_compute.seed_service_discovery,
    estate_apps.seed_rest_api,
    estate_apps.seed_http_api,
    estate_apps.seed_step_functions,
    estate_apps.seed_cloudformation,
    estate_apps.seed_route53,
)


def seed_estate(endpoint: str, account: str = DEFAULT_ACCOUNT) -> dict[str, object]:
    """Create the demo estate in eu-west-1 and us-east-1 and return the ids of what was created.

    Names, CIDRs, private IPs, idempotency tokens and zip bytes are fixed, so after
    ``reset(endpoint, seed=N)`` the returned ids are identical run to run (queue URLs carry the
    endpoint's port). Maps are keyed by resource name unless noted. Keys:

    - account, regions, ami_id
    - vpc_id, subnet_ids (by AZ), security_group_ids (web, db, inventory-sync from CloudFormation),
      vpn_gateway_id, default_vpc_id_us, elastic_ip_allocation_id, nat_gateway_id
    - instance_ids (by Name tag; Auto Scaling instances as ``demo-web-asg-0``/``-1`` by id order)
    - buckets (name -> region), queue_urls, queue_arns, topic_arns, subscription_arns (by topic name
      for SQS subscriptions, ``{topic}-lambda`` for Lambda ones)
    - iam_role_arns (lambda, states, firehose, ecs-task, apigateway)
    - dynamodb_table_arns, dynamodb_stream_arns (by table), kinesis_stream_arns, firehose_stream_arns
    - db_subnet_group, rds_cluster_arns, rds_instance_arns, rds_endpoints (moto's Endpoint.Address),
      rds_env_endpoint (the 12-character-label endpoint put in order-processor's environment)
    - redshift_cluster_arns (constructed ARN, as the StackPack builds it)
    - lambda_function_arns, lambda_alias_arns (``function:alias``), event_source_mapping_uuids
    - elb_classic_arns (constructed), load_balancer_arns, load_balancer_dns (DNSName and zone by LB),
      target_group_arns, listener_arns (``lb:port``)
    - launch_template_id, autoscaling_group_arns, autoscaling_instance_ids (group -> sorted ids)
    - ecs_cluster_arns, ecs_container_instance_arns (by EC2 Name), ecs_task_definition_arns (by
      family), ecs_service_arns, ecs_task_arns (``web-0``/``web-1`` service tasks, ``report-job``)
    - service_discovery (namespace_id, service_id, hosted_zone_id, instance_ids)
    - rest_api_ids, rest_api_deployment_ids, rest_api_resource_ids (api -> path -> id),
      rest_api_stage_arns (``api/stage``), http_api_ids
    - activity_arns, state_machine_arns
    - stack_ids (parent and nested stack), stack_resources (stack -> logical id -> physical id)
    - hosted_zone_ids (zone name -> bare id), domains
    """
    out: dict[str, Any] = {
        "account": account,
        "regions": [MAIN_REGION, SECOND_REGION],
        "ami_id": AMI_ID,
        "instance_ids": {},
        "buckets": {},
        "queue_urls": {},
        "queue_arns": {},
        "topic_arns": {},
        "subscription_arns": {},
        "hosted_zone_ids": {},
        "rds_env_endpoint": estate_compute.rds_env_endpoint("inventory-db"),
    }
    configure_moto(endpoint)
    for step in STEPS:
        step(endpoint, account, out)
    return out


def _summary(estate: dict[str, Any]) -> str:
    """One line naming the sizes of the main id maps."""
    sizes = {
        key: len(estate[key])
        for key in (
            "instance_ids",
            "buckets",
            "queue_arns",
            "topic_arns",
            "lambda_function_arns",
            "dynamodb_table_arns",
            "load_balancer_arns",
            "state_machine_arns",
            "stack_ids",
        )
    }
    return ", ".join(
        f"{size} {key.removesuffix('_ids').removesuffix('_arns')}" for key, size in sizes.items()
    )


def main(argv: list[str] | None = None) -> int:
    """Wait for the moto server, reset it, seed the demo estate (plus optional bulk load), print a summary."""
    parser = argparse.ArgumentParser(prog="python -m demo.seed", description=__doc__)
    parser.add_argument("--endpoint", required=True, help="moto server URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--bulk", type=int, default=0, metavar="N", help="also create N bulk resources")
    parser.add_argument("--seed", type=int, default=42, help="moto id seed applied after the reset")
    parser.add_argument("--workers", type=int, default=8, help="client threads for --bulk")
    parser.add_argument("--wait", type=float, default=30, metavar="S", help="wait up to S s for the server")
    args = parser.parse_args(argv)

    try:
        wait_ready(args.endpoint, args.wait)
    except TimeoutError as exc:
        print(f"demo.seed: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    reset(args.endpoint, seed=args.seed)
    estate = seed_estate(args.endpoint)
    files = shipped()
    for samples in files:
        seed_samples(args.endpoint, samples, estate)
    summary = (
        f"seeded demo estate at {args.endpoint}: vpc {estate['vpc_id']}, {_summary(estate)} "
        f"in {time.monotonic() - started:.1f}s"
    )
    if files:
        summary += f"; samples: {', '.join(f'{s.name} ({len(s.seed)} calls)' for s in files)}"
    if args.bulk:
        bulk_started = time.monotonic()
        count = seed_bulk(args.endpoint, args.bulk, workers=args.workers)
        summary += f"; bulk: {count} resources in {time.monotonic() - bulk_started:.1f}s"
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
