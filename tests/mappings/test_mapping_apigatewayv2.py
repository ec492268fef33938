"""mappings/apigatewayv2.yaml against a live moto server: HTTP and WebSocket APIs and their stages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from demo.seed import client
from tests.support import ACCOUNT, ListSink, ids_of_type, moto_server, scan_live

pytestmark = pytest.mark.live

REGION = "eu-west-1"
APIS = f"arn:aws:apigateway:{REGION}::/apis"


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list, dict]]:
    with moto_server() as endpoint:
        v2 = client("apigatewayv2", REGION, endpoint)
        web = v2.create_api(Name="web", ProtocolType="HTTP", Tags={"team": "web"})
        v2.create_stage(ApiId=web["ApiId"], StageName="$default")
        v2.create_stage(ApiId=web["ApiId"], StageName="prod", Tags={"env": "prod"})
        chat = v2.create_api(
            Name="chat", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
        )
        v2.create_stage(ApiId=chat["ApiId"], StageName="live")
        sink, results = scan_live(endpoint, regions=(REGION,), apis_to_run=("apigatewayv2",))
        yield sink, results, {"web": web["ApiId"], "chat": chat["ApiId"]}


def test_apigatewayv2_scan_is_complete(scanned):
    _, results, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_http_and_websocket_apis_have_arn_name_tags_and_cw_dimension(scanned):
    sink, _, ids = scanned
    web, chat = f"{APIS}/{ids['web']}", f"{APIS}/{ids['chat']}"
    assert ids_of_type(sink, "aws.apigatewayv2.api") == {web, chat}
    data = sink.components()[web]["data"]
    assert data["Name"] == "web"
    assert data["ApiId"] == ids["web"]
    assert data["ProtocolType"] == "HTTP"
    assert data["Tags"] == {"team": "web"}
    assert data["CW"] == {"Dimensions": [{"Key": "ApiId", "Value": ids["web"]}]}
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["layer"] == "Serverless"
    assert sink.components()[chat]["data"]["ProtocolType"] == "WEBSOCKET"


def test_stages_have_arn_name_tags_and_cw_dimensions(scanned):
    sink, _, ids = scanned
    web, chat = f"{APIS}/{ids['web']}", f"{APIS}/{ids['chat']}"
    assert ids_of_type(sink, "aws.apigatewayv2.stage") == {
        f"{web}/stages/$default",
        f"{web}/stages/prod",
        f"{chat}/stages/live",
    }
    data = sink.components()[f"{web}/stages/prod"]["data"]
    assert data["Name"] == "web - prod"
    assert data["StageName"] == "prod"
    assert (data["ApiId"], data["ApiName"]) == (ids["web"], "web")
    assert data["Tags"] == {"env": "prod"}
    assert data["CW"] == {
        "Dimensions": [{"Key": "ApiId", "Value": ids["web"]}, {"Key": "Stage", "Value": "prod"}]
    }
    assert sink.components()[f"{web}/stages/$default"]["data"]["Tags"] == {}


def test_api_has_its_stages(scanned):
    sink, _, ids = scanned
    web, chat = f"{APIS}/{ids['web']}", f"{APIS}/{ids['chat']}"
    assert sink.relations() == {
        (web, "has-resource", f"{web}/stages/$default"),
        (web, "has-resource", f"{web}/stages/prod"),
        (chat, "has-resource", f"{chat}/stages/live"),
    }
