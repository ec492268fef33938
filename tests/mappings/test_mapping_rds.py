"""mappings/rds.yaml and mappings/redshift.yaml against a live moto server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.redshift import models as redshift_models

from demo.seed import client
from engine.language.loader import load_mappings
from tests.support import ACCOUNT, ListSink, ids_of_type, moto_server, scan_live, with_params

pytestmark = pytest.mark.live

REGION = "eu-west-1"
RDS = f"arn:aws:rds:{REGION}:{ACCOUNT}"
REDSHIFT = f"arn:aws:redshift:{REGION}:{ACCOUNT}:cluster"
PASSWORD = "Password123"


def _cluster_vpc_id(cluster) -> str | None:
    """What AWS returns as a cluster's VpcId: its subnet group's VPC (moto 5.2.5 leaves it out)."""
    groups = cluster.redshift_backend.subnet_groups
    name = cluster.cluster_subnet_group_name
    return groups[name].vpc_id if name in groups else None


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list, dict]]:
    with moto_server() as endpoint:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(redshift_models.Cluster, "vpc_id", property(_cluster_vpc_id), raising=False)
            ids = _seed(endpoint)
            mappings = load_mappings()
            # One item per page: every listing must follow its Marker.
            mappings = with_params(mappings, "rds.cluster", "DescribeDBClusters", MaxRecords=1)
            mappings = with_params(mappings, "rds.instance", "DescribeDBInstances", MaxRecords=1)
            sink, results = scan_live(endpoint, mappings, regions=(REGION,), apis_to_run=("rds", "redshift"))
        yield sink, results, ids


def _seed(endpoint: str) -> dict:
    ec2 = client("ec2", REGION, endpoint)
    rds = client("rds", REGION, endpoint)
    redshift = client("redshift", REGION, endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{n}.0/24", AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for n, zone in enumerate("ab")
    ]
    sg = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    rds.create_db_subnet_group(DBSubnetGroupName="dbnet", DBSubnetGroupDescription="db", SubnetIds=subnets)
    cluster = rds.create_db_cluster(
        DBClusterIdentifier="aurora",
        Engine="aurora-postgresql",
        MasterUsername="admin",
        MasterUserPassword=PASSWORD,
        DBSubnetGroupName="dbnet",
        VpcSecurityGroupIds=[sg],
        Tags=[{"Key": "team", "Value": "data"}],
    )["DBCluster"]
    rds.create_db_cluster(
        DBClusterIdentifier="reporting",
        Engine="aurora-mysql",
        MasterUsername="admin",
        MasterUserPassword=PASSWORD,
    )
    for n in (1, 2):
        rds.create_db_instance(
            DBInstanceIdentifier=f"aurora-{n}",
            DBClusterIdentifier="aurora",
            Engine="aurora-postgresql",
            DBInstanceClass="db.r5.large",
            DBSubnetGroupName="dbnet",
        )
    pg = rds.create_db_instance(
        DBInstanceIdentifier="pg",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="admin",
        MasterUserPassword=PASSWORD,
        DBSubnetGroupName="dbnet",
        VpcSecurityGroupIds=[sg],
        Tags=[{"Key": "env", "Value": "prod"}],
    )["DBInstance"]
    redshift.create_cluster_subnet_group(
        ClusterSubnetGroupName="warehouse-net", Description="warehouse", SubnetIds=subnets
    )
    redshift.create_cluster(
        ClusterIdentifier="warehouse",
        NodeType="dc2.large",
        MasterUsername="admin",
        MasterUserPassword=PASSWORD,
        ClusterSubnetGroupName="warehouse-net",
        Tags=[{"Key": "team", "Value": "bi"}],
    )
    redshift.create_cluster(
        ClusterIdentifier="classic", NodeType="dc2.large", MasterUsername="admin", MasterUserPassword=PASSWORD
    )
    return {
        "vpc": vpc,
        "sg": sg,
        "endpoint": cluster["Endpoint"],
        "reader": cluster["ReaderEndpoint"],
        "pg": pg["Endpoint"]["Address"],
    }


def test_rds_and_redshift_scan_is_complete(scanned):
    _, results, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_rds_lists_every_page_of_clusters_and_instances(scanned):
    sink, _, _ = scanned
    assert ids_of_type(sink, "aws.rds.cluster") == {f"{RDS}:cluster:aurora", f"{RDS}:cluster:reporting"}
    assert ids_of_type(sink, "aws.rds.instance") == {
        f"{RDS}:db:aurora-1",
        f"{RDS}:db:aurora-2",
        f"{RDS}:db:pg",
    }


def test_rds_cluster_has_endpoint_urns_tags_and_cw_dimension(scanned):
    sink, _, ids = scanned
    data = sink.components()[f"{RDS}:cluster:aurora"]["data"]
    assert data["Name"] == "aurora"
    assert data["URN"] == [f"urn:endpoint:/{ids['endpoint']}", f"urn:endpoint:/{ids['reader']}"]
    assert data["Tags"] == {"team": "data"}
    assert data["CW"] == {"Dimensions": [{"Key": "DBClusterIdentifier", "Value": "aurora"}]}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["layer"] == "Databases"


def test_rds_cluster_has_a_cluster_node_edge_to_each_member_instance(scanned):
    sink, _, _ = scanned
    assert {r for r in sink.relations() if r[1] == "has_cluster_node"} == {
        (f"{RDS}:cluster:aurora", "has_cluster_node", f"{RDS}:db:aurora-1"),
        (f"{RDS}:cluster:aurora", "has_cluster_node", f"{RDS}:db:aurora-2"),
    }


def test_rds_instance_has_endpoint_urn_tags_and_cw_dimension(scanned):
    sink, _, ids = scanned
    data = sink.components()[f"{RDS}:db:pg"]["data"]
    assert data["Name"] == "pg"
    assert data["URN"] == [f"urn:endpoint:/{ids['pg']}"]  # no resolved-IP URNs: no DNS in mappings
    assert data["Tags"] == {"env": "prod"}
    assert data["CW"] == {"Dimensions": [{"Key": "DBInstanceIdentifier", "Value": "pg"}]}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}


def test_rds_instance_uses_its_vpc_and_security_groups(scanned):
    sink, _, ids = scanned
    assert {r for r in sink.relations() if r[0].startswith(f"{RDS}:db:")} == {
        (f"{RDS}:db:{name}", "uses-service", target)
        for name in ("aurora-1", "aurora-2", "pg")
        for target in (ids["vpc"], ids["sg"])
    }


def test_redshift_cluster_has_constructed_arn_as_id_and_urn(scanned):
    sink, _, _ = scanned
    assert ids_of_type(sink, "aws.redshift.cluster") == {f"{REDSHIFT}:warehouse", f"{REDSHIFT}:classic"}
    data = sink.components()[f"{REDSHIFT}:warehouse"]["data"]
    assert data["Name"] == "warehouse"
    assert data["URN"] == [f"{REDSHIFT}:warehouse"]
    assert data["Tags"] == {"team": "bi"}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["CW"] == {"Dimensions": [{"Key": "ClusterIdentifier", "Value": "warehouse"}]}  # AWS/Redshift


def test_redshift_cluster_uses_its_vpc_and_a_cluster_outside_a_vpc_has_no_edge(scanned):
    sink, _, ids = scanned
    assert {r for r in sink.relations() if r[0].startswith(REDSHIFT)} == {
        (f"{REDSHIFT}:warehouse", "uses-service", ids["vpc"])
    }
