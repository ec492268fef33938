"""mappings/kinesis.yaml and mappings/firehose.yaml against a live moto server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from demo.seed import client
from engine.language.loader import load_mappings
from tests.support import ACCOUNT, ListSink, ids_of_type, moto_server, scan_live, with_params

pytestmark = pytest.mark.live

REGION = "eu-west-1"
KINESIS = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream"
FIREHOSE = f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/firehose"
TAGS = {f"key{n}": f"value{n}" for n in range(5)}


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list]]:
    with moto_server() as endpoint:
        kinesis = client("kinesis", REGION, endpoint)
        firehose = client("firehose", REGION, endpoint)
        s3 = client("s3", REGION, endpoint)
        for name in ("clicks", "audit"):
            kinesis.create_stream(StreamName=name, ShardCount=1)
        kinesis.add_tags_to_stream(StreamName="clicks", Tags=TAGS)
        for bucket in ("archive", "extended"):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        firehose.create_delivery_stream(
            DeliveryStreamName="from-kinesis",
            DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": f"{KINESIS}/clicks", "RoleARN": ROLE},
            ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::extended"},
            Tags=[{"Key": k, "Value": v} for k, v in TAGS.items()],
        )
        for name in ("direct-a", "direct-b"):
            firehose.create_delivery_stream(
                DeliveryStreamName=name,
                DeliveryStreamType="DirectPut",
                S3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::archive"},
            )
        mappings = load_mappings()
        # Small pages, so that every manual (`next`) pagination has to follow its token.
        mappings = with_params(mappings, "firehose.delivery-stream", "ListDeliveryStreams", Limit=1)
        mappings = with_params(mappings, "firehose.delivery-stream", "ListTagsForDeliveryStream", Limit=2)
        mappings = with_params(mappings, "kinesis.data-stream", "ListTagsForStream", Limit=2)
        sink, results = scan_live(endpoint, mappings, regions=(REGION,), apis_to_run=("kinesis", "firehose"))
        yield sink, results


def test_streams_scan_is_complete(scanned):
    _, results = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_kinesis_stream_keeps_its_summary_nested_with_arn_name_and_every_tag_page(scanned):
    sink, _ = scanned
    assert ids_of_type(sink, "aws.kinesis.data-stream") == {f"{KINESIS}/clicks", f"{KINESIS}/audit"}
    data = sink.components()[f"{KINESIS}/clicks"]["data"]
    assert data["Name"] == "clicks"
    assert data["StreamDescriptionSummary"]["StreamARN"] == f"{KINESIS}/clicks"
    assert data["StreamDescriptionSummary"]["StreamName"] == "clicks"
    assert data["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    assert data["Tags"] == TAGS  # 5 tags at 2 per ListTagsForStream page
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["CW"] == {"Dimensions": [{"Key": "StreamName", "Value": "clicks"}]}  # AWS/Kinesis
    assert "URN" not in data
    assert sink.components()[f"{KINESIS}/audit"]["data"]["Tags"] == {}


def test_firehose_lists_every_delivery_stream_page(scanned):
    sink, _ = scanned
    assert ids_of_type(sink, "aws.firehose.delivery-stream") == {
        f"{FIREHOSE}/from-kinesis",
        f"{FIREHOSE}/direct-a",
        f"{FIREHOSE}/direct-b",
    }


def test_firehose_stream_has_arn_name_cw_dimension_and_every_tag_page(scanned):
    sink, _ = scanned
    data = sink.components()[f"{FIREHOSE}/from-kinesis"]["data"]
    assert data["Name"] == "from-kinesis"
    assert data["DeliveryStreamARN"] == f"{FIREHOSE}/from-kinesis"
    assert data["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert data["CW"] == {"Dimensions": [{"Key": "DeliveryStreamName", "Value": "from-kinesis"}]}
    assert data["Tags"] == TAGS  # 5 tags at 2 per ListTagsForDeliveryStream page
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}


def test_firehose_stream_links_kinesis_source_and_s3_bucket(scanned):
    sink, _ = scanned
    relations = {r for r in sink.relations() if f"{FIREHOSE}/from-kinesis" in r}
    assert relations == {
        (f"{KINESIS}/clicks", "uses-service", f"{FIREHOSE}/from-kinesis"),
        (f"{FIREHOSE}/from-kinesis", "uses-service", "arn:aws:s3:::extended"),
    }


def test_firehose_direct_put_stream_uses_only_its_s3_bucket(scanned):
    sink, _ = scanned
    assert {r for r in sink.relations() if f"{FIREHOSE}/from-kinesis" not in r} == {
        (f"{FIREHOSE}/direct-a", "uses-service", "arn:aws:s3:::archive"),
        (f"{FIREHOSE}/direct-b", "uses-service", "arn:aws:s3:::archive"),
    }
