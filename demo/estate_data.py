"""Data services of the demo estate: IAM roles, DynamoDB (+ stream), Kinesis, Firehose, RDS, Redshift."""

from __future__ import annotations

from typing import Any

from demo.common import (
    MAIN_REGION,
    SECOND_REGION,
    bucket,
    client,
    tags,
    trust_policy,
)

# Fixed moto-only placeholder; moto requires a master password and never checks it.
_PLACEHOLDER_PASSWORD = "MotoDemoOnly1"
_ROLES = {
    "lambda": "lambda.amazonaws.com",
    "states": "states.amazonaws.com",
    "firehose": "firehose.amazonaws.com",
    "ecs-task": "ecs-tasks.amazonaws.com",
    "apigateway": "apigateway.amazonaws.com",
}


def seed_roles(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Create one IAM service role per service that needs one (Lambda refuses unknown roles)."""
    iam = client("iam", SECOND_REGION, endpoint, account)
    out["iam_role_arns"] = {
        name: iam.create_role(
            RoleName=f"demo-{name}-role",
            AssumeRolePolicyDocument=trust_policy(service),
            Tags=tags(team="platform"),
        )["Role"]["Arn"]
        for name, service in _ROLES.items()
    }


def _table(dynamodb: Any, name: str, key: str, team: str, stream: bool) -> dict[str, Any]:
    """Create an on-demand table with a string hash key; with ``stream`` a NEW_AND_OLD_IMAGES stream."""
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
        "Tags": tags(team=team),
    }
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    return dynamodb.create_table(**kwargs)["TableDescription"]


def seed_dynamodb(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Tables ``orders`` (with a stream) and ``sessions`` in eu-west-1, ``audit-events`` in us-east-1."""
    tables: dict[str, str] = {}
    streams: dict[str, str] = {}
    for region, name, key, team, stream in (
        (MAIN_REGION, "orders", "order_id", "storefront", True),
        (MAIN_REGION, "sessions", "session_id", "storefront", False),
        (SECOND_REGION, "audit-events", "event_id", "platform", False),
    ):
        table = _table(client("dynamodb", region, endpoint, account), name, key, team, stream)
        tables[name] = table["TableArn"]
        if stream:
            streams[name] = table["LatestStreamArn"]
    out["dynamodb_table_arns"] = tables
    out["dynamodb_stream_arns"] = streams


def seed_kinesis(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """One-shard data stream ``clickstream`` in eu-west-1."""
    kinesis = client("kinesis", MAIN_REGION, endpoint, account)
    kinesis.create_stream(StreamName="clickstream", ShardCount=1)
    kinesis.add_tags_to_stream(StreamName="clickstream", Tags={"team": "analytics"})
    arn = kinesis.describe_stream_summary(StreamName="clickstream")["StreamDescriptionSummary"]["StreamARN"]
    out["kinesis_stream_arns"] = {"clickstream": arn}


def seed_firehose(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Firehose ``clickstream-archive`` (Kinesis source -> S3) and ``orders-export`` (DirectPut -> S3)."""
    region = MAIN_REGION
    bucket(
        client("s3", region, endpoint, account), "demo-clickstream-archive-eu", region, {"team": "analytics"}
    )
    out["buckets"]["demo-clickstream-archive-eu"] = region
    firehose = client("firehose", region, endpoint, account)
    role = out["iam_role_arns"]["firehose"]

    def s3_destination(bucket_name: str, prefix: str) -> dict[str, Any]:
        return {"RoleARN": role, "BucketARN": f"arn:aws:s3:::{bucket_name}", "Prefix": prefix}

    archive = firehose.create_delivery_stream(
        DeliveryStreamName="clickstream-archive",
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={
            "KinesisStreamARN": out["kinesis_stream_arns"]["clickstream"],
            "RoleARN": role,
        },
        ExtendedS3DestinationConfiguration=s3_destination("demo-clickstream-archive-eu", "clicks/"),
        Tags=tags(team="analytics"),
    )["DeliveryStreamARN"]
    export = firehose.create_delivery_stream(
        DeliveryStreamName="orders-export",
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration=s3_destination("demo-logs-eu", "orders/"),
        Tags=tags(team="storefront"),
    )["DeliveryStreamARN"]
    out["firehose_stream_arns"] = {"clickstream-archive": archive, "orders-export": export}


def seed_rds(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Aurora PostgreSQL cluster ``orders-aurora`` with member ``orders-aurora-1``, and ``inventory-db``.

    All in the DB subnet group ``demo-db`` over the demo VPC's two subnets, with the ``db`` security group.
    """
    rds = client("rds", MAIN_REGION, endpoint, account)
    db_sg = out["security_group_ids"]["db"]
    rds.create_db_subnet_group(
        DBSubnetGroupName="demo-db",
        DBSubnetGroupDescription="demo VPC database subnets",
        SubnetIds=list(out["subnet_ids"].values()),
        Tags=tags(team="data"),
    )
    cluster = rds.create_db_cluster(
        DBClusterIdentifier="orders-aurora",
        Engine="aurora-postgresql",
        MasterUsername="demo",
        MasterUserPassword=_PLACEHOLDER_PASSWORD,
        DBSubnetGroupName="demo-db",
        VpcSecurityGroupIds=[db_sg],
        Tags=tags(team="data", **{"stackstate-environment": "production"}),
    )["DBCluster"]
    member = rds.create_db_instance(
        DBInstanceIdentifier="orders-aurora-1",
        DBClusterIdentifier="orders-aurora",
        Engine="aurora-postgresql",
        DBInstanceClass="db.r6g.large",
        DBSubnetGroupName="demo-db",
        Tags=tags(team="data"),
    )["DBInstance"]
    standalone = rds.create_db_instance(
        DBInstanceIdentifier="inventory-db",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="demo",
        MasterUserPassword=_PLACEHOLDER_PASSWORD,
        DBSubnetGroupName="demo-db",
        VpcSecurityGroupIds=[db_sg],
        Port=5432,
        Tags=tags(team="data", Name="inventory-db"),
    )["DBInstance"]
    out["db_subnet_group"] = "demo-db"
    out["rds_cluster_arns"] = {"orders-aurora": cluster["DBClusterArn"]}
    out["rds_instance_arns"] = {
        "orders-aurora-1": member["DBInstanceArn"],
        "inventory-db": standalone["DBInstanceArn"],
    }
    described = rds.describe_db_instances(DBInstanceIdentifier="inventory-db")["DBInstances"][0]
    out["rds_endpoints"] = {"inventory-db": described["Endpoint"]["Address"]}


def seed_redshift(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Redshift cluster ``analytics`` in the cluster subnet group ``demo-redshift`` (so VpcId is set)."""
    region = MAIN_REGION
    redshift = client("redshift", region, endpoint, account)
    redshift.create_cluster_subnet_group(
        ClusterSubnetGroupName="demo-redshift",
        Description="demo VPC warehouse subnets",
        SubnetIds=list(out["subnet_ids"].values()),
    )
    redshift.create_cluster(
        ClusterIdentifier="analytics",
        NodeType="dc2.large",
        ClusterType="single-node",
        MasterUsername="demo",
        MasterUserPassword=_PLACEHOLDER_PASSWORD,
        ClusterSubnetGroupName="demo-redshift",
        VpcSecurityGroupIds=[out["security_group_ids"]["db"]],
        Tags=tags(team="analytics", **{"stackstate-identifier": "urn:redshift:/analytics"}),
    )
    out["redshift_cluster_arns"] = {"analytics": f"arn:aws:redshift:{region}:{account}:cluster:analytics"}
