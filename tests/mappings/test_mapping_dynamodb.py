"""mappings/dynamodb.yaml against a live moto server: tables, their derived streams, every page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from demo.seed import client
from engine.language.loader import load_mappings
from tests.support import ACCOUNT, ListSink, ids_of_type, moto_server, scan_live, with_params

pytestmark = pytest.mark.live

REGION = "eu-west-1"
PREFIX = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
TAGS = {f"key{n:02}": f"value{n}" for n in range(12)}  # moto returns 10 tags per page


def _table(ddb, name: str, **extra: object) -> dict:
    return ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )["TableDescription"]


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list, dict]]:
    with moto_server() as endpoint:
        ddb = client("dynamodb", REGION, endpoint)
        orders = _table(
            ddb, "orders", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        )
        ddb.tag_resource(
            ResourceArn=orders["TableArn"], Tags=[{"Key": k, "Value": v} for k, v in TAGS.items()]
        )
        _table(ddb, "customers")
        _table(ddb, "invoices")
        # One table per ListTables page: the listing must follow LastEvaluatedTableName.
        mappings = with_params(load_mappings(), "dynamodb.table", "ListTables", Limit=1)
        sink, results = scan_live(endpoint, mappings, regions=(REGION,), apis_to_run=("dynamodb",))
        yield sink, results, orders


def test_dynamodb_scan_is_complete(scanned):
    _, results, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_dynamodb_lists_every_table_page(scanned):
    sink, _, _ = scanned
    tables = ids_of_type(sink, "aws.dynamodb.table")
    assert tables == {f"{PREFIX}/orders", f"{PREFIX}/customers", f"{PREFIX}/invoices"}


def test_dynamodb_table_has_arn_name_cw_dimension_and_every_tag_page(scanned):
    sink, _, _ = scanned
    table = sink.components()[f"{PREFIX}/orders"]
    assert table["type"]["name"] == "aws.dynamodb.table"
    data = table["data"]
    assert data["Name"] == "orders"
    assert data["TableName"] == "orders"
    assert data["TableArn"] == f"{PREFIX}/orders"
    assert data["CW"] == {"Dimensions": [{"Key": "TableName", "Value": "orders"}]}
    assert data["Tags"] == TAGS  # 12 tags: two ListTagsOfResource pages
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert "URN" not in data
    assert data["layer"] == "Databases"


def test_dynamodb_stream_is_derived_from_its_table(scanned):
    sink, _, orders = scanned
    stream_arn, label = orders["LatestStreamArn"], orders["LatestStreamLabel"]
    assert stream_arn == f"{PREFIX}/orders/stream/{label}"
    stream = sink.components()[stream_arn]
    assert stream["type"]["name"] == "aws.dynamodb.streams"
    data = stream["data"]
    assert data["Name"] == f"orders/stream/{label}"  # the ARN after its first "/"
    assert data["StreamEnabled"] is True
    assert data["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert data["LatestStreamArn"] == stream_arn
    assert data["LatestStreamLabel"] == label
    assert data["CW"] == {
        "Dimensions": [{"Key": "TableName", "Value": "orders"}, {"Key": "StreamLabel", "Value": label}]
    }
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}


def test_dynamodb_table_uses_its_stream_and_tables_without_stream_have_none(scanned):
    sink, _, orders = scanned
    assert sink.relations() == {(f"{PREFIX}/orders", "uses-service", orders["LatestStreamArn"])}
    assert len(ids_of_type(sink, "aws.dynamodb.streams")) == 1
