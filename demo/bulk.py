"""Bulk seeder for benchmarks: thousands of cheap tagged resources, created side by side.

moto is not thread-safe inside one backend: two concurrent EC2 creates in the same region can make one
of them iterate a dict the other is growing (``RuntimeError: dictionary changed size during iteration``
in ``create_security_group``, answered as an HTML 500 that botocore cannot even parse, so it never
retries). Creates are therefore grouped into *lanes*, one per moto backend (service x region; S3 has
a single backend for all regions), and each lane runs its calls one after another. Lanes run in
parallel, which is safe because they never share a backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from demo.common import AMI_ID, DEFAULT_ACCOUNT, MAIN_REGION, SECOND_REGION, bucket, client, spec, tags

_BULK_WEIGHTS = {"queues": 0.36, "topics": 0.26, "buckets": 0.13, "groups": 0.13, "subnets": 0.12}
_MAX_SUBNETS_PER_REGION = 240  # /24s left in the bulk /16 after the /20 for instances

Task = Callable[[], int]
Lanes = dict[tuple[str, str], list[Task]]


def _short(region: str) -> str:
    """Return a compact region code for names, e.g. ``eu-west-1`` -> ``euw1``."""
    parts = region.split("-")
    return parts[0] + "".join(part[0] for part in parts[1:-1]) + parts[-1]


def _split(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` by ``weights``; rounding leftovers go to the first key."""
    counts = {key: int(total * weight) for key, weight in weights.items()}
    first = next(iter(counts))
    counts[first] += total - sum(counts.values())
    return counts


def _region_share(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` near-equal integers."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _create_one(call: Callable[..., Any], **kwargs: Any) -> int:
    """Run one create call and count it as one resource."""
    call(**kwargs)
    return 1


def _run_fleet(ec2: Any, count: int, **kwargs: Any) -> int:
    """Launch ``count`` instances in one run_instances call and return how many started."""
    reservation = ec2.run_instances(ImageId=AMI_ID, MinCount=count, MaxCount=count, **kwargs)
    return len(reservation["Instances"])


def _run_lane(tasks: list[Task]) -> int:
    """Run one lane's creates in order and return how many resources they made."""
    return sum(task() for task in tasks)


def _plan_counts(resources: int, regions: int) -> tuple[dict[str, list[int]], list[int]]:
    """Per kind, the count per region; and the fleet size per region."""
    instances_total = min(100, resources // 20)
    rest = max(0, resources - instances_total - 2 * regions)  # 2 = bulk VPC + fleet subnet
    counts = _split(rest, _BULK_WEIGHTS)
    subnet_cap = _MAX_SUBNETS_PER_REGION * regions
    if counts["subnets"] > subnet_cap:
        counts["queues"] += counts["subnets"] - subnet_cap
        counts["subnets"] = subnet_cap
    shares = {kind: _region_share(total, regions) for kind, total in counts.items()}
    return shares, _region_share(instances_total, regions)


def _ec2_lane(
    ec2: Any, code: str, vpc_id: str, fleet_subnet: str, fleet: int, subnets: int, groups: int
) -> list[Task]:
    """Instances (run_instances in batches of 100), /24 subnets and security groups of one region."""
    base = {"bulk": "true", "region-code": code}
    lane: list[Task] = []
    for batch in range(0, fleet, 100):
        lane.append(
            partial(
                _run_fleet,
                ec2,
                min(100, fleet - batch),
                InstanceType="t3.nano",
                SubnetId=fleet_subnet,
                ClientToken=f"bulk-{code}-fleet-{batch}",
                TagSpecifications=spec("instance", {"Name": f"bulk-{code}-fleet", "team": "fleet", **base}),
            )
        )
    for i in range(subnets):
        lane.append(
            partial(
                _create_one,
                ec2.create_subnet,
                VpcId=vpc_id,
                CidrBlock=f"10.200.{16 + i}.0/24",
                TagSpecifications=spec("subnet", {"Name": f"bulk-{code}-subnet-{i:04d}", **base}),
            )
        )
    for i in range(groups):
        name = f"bulk-{code}-sg-{i:04d}"
        lane.append(
            partial(
                _create_one,
                ec2.create_security_group,
                GroupName=name,
                Description=f"bulk group {name}",
                VpcId=vpc_id,
                TagSpecifications=spec("security-group", {"Name": name, "team": f"team-{i % 8}", **base}),
            )
        )
    return lane


def _bulk_vpc(ec2: Any, code: str) -> tuple[str, str]:
    """Create the bulk /16 VPC and its /20 fleet subnet; return their ids."""
    base = {"bulk": "true", "region-code": code}
    vpc_id = ec2.create_vpc(
        CidrBlock="10.200.0.0/16", TagSpecifications=spec("vpc", {"Name": f"bulk-{code}", **base})
    )["Vpc"]["VpcId"]
    fleet_subnet = ec2.create_subnet(
        VpcId=vpc_id,
        CidrBlock="10.200.0.0/20",
        TagSpecifications=spec("subnet", {"Name": f"bulk-{code}-fleet", **base}),
    )["Subnet"]["SubnetId"]
    return vpc_id, fleet_subnet


def seed_bulk(
    endpoint: str,
    resources: int = 2000,
    regions: Sequence[str] = (MAIN_REGION, SECOND_REGION),
    *,
    account: str = DEFAULT_ACCOUNT,
    workers: int = 8,
) -> int:
    """Create at least ``resources`` cheap tagged resources spread over ``regions``; return the count.

    Per region: one /16 VPC and a /20 subnet holding a share of ~100 instances (run_instances in
    batches of 100), then /24 subnets, security groups, SQS queues, SNS topics and S3 buckets.
    Names are deterministic; ids are not when ``workers > 1`` (moto draws them in arrival order).
    At most ``workers`` lanes (one per moto backend, see the module docstring) run at once.
    """
    regions = list(regions)
    shares, fleet = _plan_counts(resources, len(regions))
    created = 0
    lanes: Lanes = {}
    for index, region in enumerate(regions):
        code = _short(region)
        ec2 = client("ec2", region, endpoint, account)
        vpc_id, fleet_subnet = _bulk_vpc(ec2, code)
        created += 2
        lanes[("ec2", region)] = _ec2_lane(
            ec2, code, vpc_id, fleet_subnet, fleet[index], shares["subnets"][index], shares["groups"][index]
        )
        sqs = client("sqs", region, endpoint, account)
        sns = client("sns", region, endpoint, account)
        s3 = client("s3", region, endpoint, account)
        base = {"bulk": "true", "region-code": code}
        lanes[("sqs", region)] = [
            partial(
                _create_one,
                sqs.create_queue,
                QueueName=f"bulk-{code}-queue-{i:05d}",
                tags={"team": f"team-{i % 8}", **base},
            )
            for i in range(shares["queues"][index])
        ]
        lanes[("sns", region)] = [
            partial(
                _create_one,
                sns.create_topic,
                Name=f"bulk-{code}-topic-{i:05d}",
                Tags=tags(team=f"team-{i % 8}", **base),
            )
            for i in range(shares["topics"][index])
        ]
        lanes.setdefault(("s3", "global"), []).extend(
            partial(
                _create_one,
                bucket,
                s3=s3,
                name=f"bulk-{code}-bucket-{i:05d}",
                region=region,
                tag_map={"team": f"team-{i % 8}", **base},
            )
            for i in range(shares["buckets"][index])
        )

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(lanes)))) as pool:
        created += sum(pool.map(_run_lane, lanes.values()))
    return created
