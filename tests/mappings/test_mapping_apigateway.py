"""mappings/apigateway.yaml against a live moto server: REST APIs, stages, resources, methods, targets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from demo.seed import client
from tests.support import ACCOUNT, ListSink, ids_of_type, moto_server, scan_live

pytestmark = pytest.mark.live

REGION = "eu-west-1"
CHINA = "cn-north-1"
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders"
LAMBDA_URI = f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{FUNCTION}/invocations"
SQS_URI = f"arn:aws:apigateway:{REGION}:sqs:path/{ACCOUNT}/orders-q"
INTEGRATION = "aws.apigateway.method.http.integration"


def _method(api, api_id: str, resource_id: str, verb: str, kind: str | None = None, uri: str | None = None):
    api.put_method(restApiId=api_id, resourceId=resource_id, httpMethod=verb, authorizationType="NONE")
    if kind is not None:
        extra = {"uri": uri, "integrationHttpMethod": "POST"} if uri else {}
        api.put_integration(restApiId=api_id, resourceId=resource_id, httpMethod=verb, type=kind, **extra)


def _seed(endpoint: str) -> dict:
    api = client("apigateway", REGION, endpoint)
    shop = api.create_rest_api(name="shop", tags={"team": "web"})["id"]
    root = api.get_resources(restApiId=shop)["items"][0]["id"]
    orders = api.create_resource(restApiId=shop, parentId=root, pathPart="orders")["id"]
    one = api.create_resource(restApiId=shop, parentId=orders, pathPart="{id}")["id"]
    health = api.create_resource(restApiId=shop, parentId=root, pathPart="health")["id"]
    mock = api.create_resource(restApiId=shop, parentId=root, pathPart="mock")["id"]
    api.create_resource(restApiId=shop, parentId=root, pathPart="bare")  # no methods: no component
    _method(api, shop, orders, "GET", "HTTP_PROXY", "https://${stageVariables.backend}:8443/orders")
    _method(api, shop, orders, "POST", "AWS_PROXY", LAMBDA_URI)
    _method(api, shop, orders, "PUT", "AWS", SQS_URI)
    _method(api, shop, one, "DELETE")  # no integration: no method component
    _method(api, shop, one, "PATCH", "HTTP_PROXY", "https://${stageVariables.missing}/orders")  # unresolved
    _method(api, shop, health, "GET", "HTTP", "http://user@health.internal/ping")
    _method(api, shop, mock, "GET", "MOCK")
    deployment = api.create_deployment(
        restApiId=shop, stageName="prod", variables={"backend": "orders.example.com"}
    )["id"]
    api.create_stage(
        restApiId=shop,
        stageName="dev",
        deploymentId=deployment,
        variables={"backend": "dev.example.com"},
        tags={"env": "dev"},
    )
    empty = api.create_rest_api(name="empty")["id"]
    china = client("apigateway", CHINA, endpoint).create_rest_api(name="shop")["id"]
    return {
        "shop": shop,
        "empty": empty,
        "china": china,
        "deployment": deployment,
        "orders": orders,
        "one": one,
    }


@pytest.fixture(scope="module")
def scanned() -> Iterator[tuple[ListSink, list, dict]]:
    with moto_server() as endpoint:
        ids = _seed(endpoint)
        sink, results = scan_live(endpoint, regions=(REGION, CHINA), apis_to_run=("apigateway",))
        yield sink, results, ids


def _api(ids: dict, name: str = "shop") -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{ids[name]}"


def test_apigateway_scan_is_complete(scanned):
    _, results, _ = scanned
    assert results[0].complete, [u.error for u in results[0].units]


def test_rest_api_has_execute_api_arn_name_ids_and_inline_tags(scanned):
    sink, _, ids = scanned
    assert ids_of_type(sink, "aws.apigateway.rest-api") == {
        _api(ids),
        _api(ids, "empty"),
        f"arn:aws-cn:execute-api:{CHINA}:{ACCOUNT}:{ids['china']}",  # partition-aware
    }
    data = sink.components()[_api(ids)]["data"]
    assert data["Name"] == "shop"
    assert (data["RestApiId"], data["RestApiName"], data["Id"]) == (ids["shop"], "shop", ids["shop"])
    assert data["Tags"] == {"team": "web"}
    assert data["layer"] == "Serverless"
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}


def test_stage_has_name_ids_cw_dimensions_and_tags(scanned):
    sink, _, ids = scanned
    api = _api(ids)
    assert ids_of_type(sink, "aws.apigateway.stage") == {f"{api}/prod", f"{api}/dev"}
    data = sink.components()[f"{api}/dev"]["data"]
    assert data["Name"] == "shop - dev"
    assert data["StageName"] == "dev"
    assert data["DeploymentId"] == ids["deployment"]
    assert (data["RestApiId"], data["RestApiName"]) == (ids["shop"], "shop")
    assert data["Variables"] == {"Backend": "dev.example.com"}  # keys are capitalised, as §2.2 says
    assert data["Tags"] == {"env": "dev"}
    assert data["CW"] == {
        "Dimensions": [{"Key": "Stage", "Value": "dev"}, {"Key": "ApiName", "Value": "shop"}]
    }
    assert sink.components()[f"{api}/prod"]["data"]["Tags"] == {}


def test_every_stage_repeats_the_resources_that_have_methods(scanned):
    sink, _, ids = scanned
    api = _api(ids)
    paths = ("/orders", "/orders/{id}", "/health", "/mock")
    assert ids_of_type(sink, "aws.apigateway.resource") == {
        f"{api}/{stage}/*{path}" for stage in ("prod", "dev") for path in paths
    }
    data = sink.components()[f"{api}/prod/*/orders/{{id}}"]["data"]
    assert {k: data[k] for k in ("ResourceId", "Path", "PathPart", "DeploymentId", "StageName")} == {
        "ResourceId": ids["one"],
        "Path": "/orders/{id}",
        "PathPart": "{id}",
        "DeploymentId": ids["deployment"],
        "StageName": "prod",
    }
    assert (data["RestApiId"], data["RestApiName"]) == (ids["shop"], "shop")
    assert data["CW"] == {
        "Dimensions": [{"Key": "Stage", "Value": "prod"}, {"Key": "ApiName", "Value": "shop"}]
    }


def test_methods_with_an_integration_are_components_per_stage(scanned):
    sink, _, ids = scanned
    api = _api(ids)
    methods = ("GET/orders", "POST/orders", "PUT/orders", "PATCH/orders/{id}", "GET/health", "GET/mock")
    assert ids_of_type(sink, "aws.apigateway.method") == {
        f"{api}/{stage}/{method}" for stage in ("prod", "dev") for method in methods
    }  # DELETE /orders/{id} has no integration
    data = sink.components()[f"{api}/dev/GET/orders"]["data"]
    assert data["HttpMethod"] == "GET"
    assert data["MethodIntegration"]["Type"] == "HTTP_PROXY"
    assert data["MethodIntegration"]["Uri"] == "https://dev.example.com:8443/orders"  # stage variable
    assert {k: data[k] for k in ("ResourceId", "Path", "PathPart", "DeploymentId", "StageName")} == {
        "ResourceId": ids["orders"],
        "Path": "/orders",
        "PathPart": "orders",
        "DeploymentId": ids["deployment"],
        "StageName": "dev",
    }
    assert (data["RestApiId"], data["RestApiName"]) == (ids["shop"], "shop")
    assert data["CW"] == {
        "Dimensions": [
            {"Key": "Method", "Value": "GET"},
            {"Key": "Resource", "Value": "/orders"},
            {"Key": "Stage", "Value": "dev"},
            {"Key": "ApiName", "Value": "shop"},
        ]
    }
    unresolved = sink.components()[f"{api}/prod/PATCH/orders/{{id}}"]["data"]
    assert unresolved["MethodIntegration"]["Uri"] == "https://${stageVariables.missing}/orders"


def test_api_stage_resource_method_chain(scanned):
    sink, _, ids = scanned
    api = _api(ids)
    relations = sink.relations()
    for stage in ("prod", "dev"):
        assert (api, "has-resource", f"{api}/{stage}") in relations
        assert (f"{api}/{stage}", "uses-service", f"{api}/{stage}/*/orders") in relations
        assert (f"{api}/{stage}/*/orders", "uses-service", f"{api}/{stage}/POST/orders") in relations
        assert (
            f"{api}/{stage}/*/orders/{{id}}",
            "uses-service",
            f"{api}/{stage}/PATCH/orders/{{id}}",
        ) in relations
    assert not any(s == _api(ids, "empty") for s, _, _ in relations)


def test_methods_use_lambda_sqs_and_http_targets(scanned):
    sink, _, ids = scanned
    api = _api(ids)
    targets = {
        (s.removeprefix(f"{api}/"), t)
        for s, _, t in sink.relations()
        if s.startswith(f"{api}/") and "/*/" not in s and not t.startswith(f"{api}/")
    }
    assert targets == {
        ("prod/POST/orders", FUNCTION),
        ("dev/POST/orders", FUNCTION),
        ("prod/PUT/orders", f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders-q"),
        ("dev/PUT/orders", f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders-q"),
        ("prod/GET/orders", "urn:service:/orders.example.com"),  # bare host: no port
        ("dev/GET/orders", "urn:service:/dev.example.com"),
        ("prod/GET/health", "urn:service:/health.internal"),  # no user info
        ("dev/GET/health", "urn:service:/health.internal"),
    }  # MOCK and an unresolved stage variable give no target


def test_http_backends_are_placeholder_integration_components(scanned):
    sink, _, _ = scanned
    hosts = ("orders.example.com", "dev.example.com", "health.internal")
    assert ids_of_type(sink, INTEGRATION) == {f"urn:service:/{h}" for h in hosts}
    data = sink.components()["urn:service:/orders.example.com"]["data"]
    assert data["Location"] == {"AwsAccount": ACCOUNT, "AwsRegion": REGION}
    assert data["Tags"] == {}
    assert not {"Name", "CW", "URN", "Uri", "Type"} & set(data)
