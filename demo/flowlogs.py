"""VPC flow logs for the demo estate: a versioned log bucket and flow-log objects written from the estate's
real network interfaces and addresses (run after ``demo.seed``).

Usage: ``python -m demo.flowlogs --endpoint http://127.0.0.1:5000``.

moto creates interfaces for instances and the NAT gateway only, so the interfaces AWS would create for the
RDS instances, a VPC Lambda function and the application load balancer are added as AWS describes them
(``RDSNetworkInterface``, ``AWS Lambda VPC ENI-{function}-{uuid}``, ``ELB app/{name}/{id}``), and the NAT
gateway's interface gets the description AWS gives it. The traffic: web servers and a Lambda function
talking to the databases, hosts talking to each other, public traffic, load-balancer and NAT traffic, a
NODATA line, and one object in a custom format (plain text).
"""

from __future__ import annotations

import argparse
import gzip
import time
from typing import Any

from demo.common import DEFAULT_ACCOUNT, MAIN_REGION, client

HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action "
    "log-status"
)
LAMBDA_UUID = "0f5e3c4a-1b2c-4d5e-8f90-a1b2c3d4e5f6"


def seed_flowlogs(endpoint: str, account: str = DEFAULT_ACCOUNT, region: str = MAIN_REGION) -> dict[str, Any]:
    """Create the bucket and write the objects; return the interfaces and object keys used."""
    ec2, s3 = client("ec2", region, endpoint, account), client("s3", region, endpoint, account)
    bucket = f"stackstate-logs-{account}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    vpc = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["demo-vpc"]}])["Vpcs"][0]["VpcId"]
    subnets = sorted(
        (s["CidrBlock"], s["SubnetId"])
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    )
    a, b = subnets[0][1], subnets[1][1]  # 10.0.0.0/20, 10.0.16.0/20
    hosts = _instances(ec2, vpc)

    def interface(subnet: str, address: str, description: str) -> tuple[str, str]:
        made = ec2.create_network_interface(
            SubnetId=subnet, PrivateIpAddress=address, Description=description
        )
        return made["NetworkInterface"]["NetworkInterfaceId"], address

    rds = interface(b, "10.0.16.50", "RDSNetworkInterface")  # inventory-db
    aurora = interface(b, "10.0.16.51", "RDSNetworkInterface")  # orders-aurora-1
    function = interface(a, "10.0.0.60", f"AWS Lambda VPC ENI-order-processor-{LAMBDA_UUID}")
    alb_arn = client("elbv2", region, endpoint, account).describe_load_balancers(Names=["demo-alb"])
    alb_id = alb_arn["LoadBalancers"][0]["LoadBalancerArn"].rsplit("/", 1)[-1]
    alb = interface(a, "10.0.0.70", f"ELB app/demo-alb/{alb_id}")
    nat = _nat_interface(ec2)
    web1, web2, db1, ecs1 = (hosts[n] for n in ("web-1", "web-2", "db-1", "ecs-1"))
    now = int(time.time()) // 60 * 60 - 60
    lines = [
        # web-1 -> inventory-db, logged by both interfaces; the answers are larger
        *_both(web1, rds, 41000, 5432, 40, 12_000, 60_000, now),
        *_both(web2, aurora, 41500, 5432, 25, 8_000, 30_000, now),
        _line(web1[0], web1[1], db1[1], 42000, 5432, 10, 3_000, now),  # to the EC2 database host
        _line(db1[0], db1[1], web1[1], 5432, 42000, 12, 9_000, now),
        _line(ecs1[0], ecs1[1], web2[1], 43000, 8080, 8, 2_000, now),
        _line(function[0], function[1], rds[1], 44000, 5432, 6, 1_500, now),  # order-processor -> database
        _line(web1[0], web1[1], "52.94.236.248", 45000, 443, 5, 1_200, now),  # public: left out
        _line(alb[0], alb[1], web1[1], 46000, 80, 9, 4_000, now),  # through the ALB: left out
        _line(nat[0], web2[1], nat[1], 47000, 443, 3, 700, now),  # through the NAT gateway: left out
        f"2 {account} {db1[0]} - - - - - - - {now} {now + 60} - NODATA",
    ]
    stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime(now))
    prefix = f"AWSLogs/{account}/vpcflowlogs/{region}/{time.strftime('%Y/%m/%d', time.gmtime(now))}/"
    name = f"{account}_vpcflowlogs_{region}_fl-0demo"
    keys = [f"{prefix}{name}_{stamp}_0001.log.gz", f"{prefix}{name}_{stamp}_0002.log"]
    s3.put_object(
        Bucket=bucket, Key=keys[0], Body=gzip.compress(("\n".join([HEADER, *lines]) + "\n").encode())
    )
    custom = "vpc-id interface-id srcaddr dstaddr srcport dstport protocol bytes packets start end"
    record = f"{vpc} {web1[0]} {ecs1[1]} {web1[1]} 48000 8080 6 2500 7 {now} {now + 60}"
    s3.put_object(Bucket=bucket, Key=keys[1], Body=f"{custom}\n{record}\n".encode())
    return {"bucket": bucket, "vpc": vpc, "keys": keys, "hosts": hosts, "rds": rds, "aurora": aurora,
            "function": function, "alb": alb, "nat": nat}  # fmt: skip


def _instances(ec2: Any, vpc: str) -> dict[str, tuple[str, str]]:
    """Name tag -> (primary interface id, private address) of the VPC's instances."""
    found = {}
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    for reservation in (r for page in pages for r in page["Reservations"]):
        for instance in reservation["Instances"]:
            name = next(
                (t["Value"] for t in instance.get("Tags", []) if t["Key"] == "Name"), instance["InstanceId"]
            )
            primary = instance["NetworkInterfaces"][0]
            found[name] = (primary["NetworkInterfaceId"], primary["PrivateIpAddress"])
    return found


def _nat_interface(ec2: Any) -> tuple[str, str]:
    """The NAT gateway's interface, described as AWS describes it."""
    gateway = ec2.describe_nat_gateways()["NatGateways"][0]
    address = gateway["NatGatewayAddresses"][0]
    ec2.modify_network_interface_attribute(
        NetworkInterfaceId=address["NetworkInterfaceId"],
        Description={"Value": f"Interface for NAT Gateway {gateway['NatGatewayId']}"},
    )
    return address["NetworkInterfaceId"], address["PrivateIp"]


def _line(eni: str, src: str, dst: str, sport: int, dport: int, packets: int, size: int, start: int) -> str:
    end = start + 60
    fields = (2, DEFAULT_ACCOUNT, eni, src, dst, sport, dport, 6, packets, size, start, end, "ACCEPT", "OK")
    return " ".join(map(str, fields))


def _both(
    client_side: tuple[str, str], server: tuple[str, str], sport: int, dport: int, packets: int, sent: int,
    received: int, start: int,
) -> list[str]:  # fmt: skip
    """A connection as both interfaces log it: each direction once by the sender, once by the receiver."""
    (c_eni, c_ip), (s_eni, s_ip) = client_side, server
    return [
        _line(c_eni, c_ip, s_ip, sport, dport, packets, sent, start),
        _line(s_eni, c_ip, s_ip, sport, dport, packets, sent, start),
        _line(s_eni, s_ip, c_ip, dport, sport, packets, received, start),
        _line(c_eni, s_ip, c_ip, dport, sport, packets, received, start),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", required=True, help="The moto server, e.g. http://127.0.0.1:5000")
    args = parser.parse_args()
    seeded = seed_flowlogs(args.endpoint)
    print(f"flow logs: {len(seeded['keys'])} objects in s3://{seeded['bucket']}/")


if __name__ == "__main__":
    main()
