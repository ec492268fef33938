"""Application layer of the demo estate: API Gateway (REST + HTTP API), Step Functions, CloudFormation
(with a nested stack), Route 53 zone records and a Route 53 Domains registration.
"""

from __future__ import annotations

import json
from typing import Any

from demo.common import (
    MAIN_REGION,
    SECOND_REGION,
    bucket,
    client,
    lower_tags,
    tags,
)

_PARTNER_URL = "https://api.partner.example.com/v1/orders"
_BACKEND_URL = "http://${stageVariables.backend}:8080/items"
_STAGE_VARIABLES = {"backend": "backend.example.com"}
_TEMPLATE_BUCKET = "demo-cfn-templates-eu"
_NESTED_KEY = "nested/inventory-audit.json"


def _method(apigw: Any, api: str, resource: str, http_method: str, **integration: Any) -> None:
    """Add an unauthenticated method with one integration to a REST API resource."""
    apigw.put_method(restApiId=api, resourceId=resource, httpMethod=http_method, authorizationType="NONE")
    apigw.put_integration(restApiId=api, resourceId=resource, httpMethod=http_method, **integration)


def _integrations(
    apigw: Any, api: str, paths: dict[str, str], function_arn: str, out: dict[str, Any]
) -> None:
    """The four methods: Lambda proxy, SQS, HTTP proxy via a stage variable, plain HTTP proxy."""
    region, account = MAIN_REGION, out["account"]
    _method(
        apigw,
        api,
        paths["orders"],
        "GET",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations",
    )
    _method(
        apigw,
        api,
        paths["orders"],
        "POST",
        type="AWS",
        integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:{region}:sqs:path/{account}/orders",
        credentials=out["iam_role_arns"]["apigateway"],
    )
    _method(
        apigw, api, paths["items"], "GET", type="HTTP_PROXY", integrationHttpMethod="GET", uri=_BACKEND_URL
    )
    _method(
        apigw,
        api,
        paths["partner"],
        "POST",
        type="HTTP_PROXY",
        integrationHttpMethod="POST",
        uri=_PARTNER_URL,
    )


def seed_rest_api(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """REST API ``demo-shop-api`` with stage ``prod`` (stage variable ``backend``) and four methods:

    GET /orders -> Lambda order-processor (AWS_PROXY), POST /orders -> SQS queue orders (AWS),
    GET /items -> HTTP_PROXY ``http://${stageVariables.backend}:8080/items``,
    POST /partner -> HTTP_PROXY ``https://api.partner.example.com/v1/orders``.
    """
    region = MAIN_REGION
    apigw = client("apigateway", region, endpoint, account)
    api = apigw.create_rest_api(
        name="demo-shop-api",
        description="Storefront API",
        endpointConfiguration={"types": ["REGIONAL"]},
        tags={"team": "storefront", "stackstate-environment": "production"},
    )["id"]
    root = next(r["id"] for r in apigw.get_resources(restApiId=api)["items"] if r["path"] == "/")
    paths = {
        part: apigw.create_resource(restApiId=api, parentId=root, pathPart=part)["id"]
        for part in ("orders", "items", "partner")
    }
    function_arn = out["lambda_function_arns"]["order-processor"]
    _integrations(apigw, api, paths, function_arn, out)
    client("lambda", region, endpoint, account).add_permission(
        FunctionName=function_arn,
        StatementId="apigateway-demo-shop-api",
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=f"arn:aws:execute-api:{region}:{account}:{api}/*/GET/orders",
    )
    deployment = apigw.create_deployment(restApiId=api, description="initial")["id"]
    apigw.create_stage(
        restApiId=api,
        stageName="prod",
        deploymentId=deployment,
        variables=_STAGE_VARIABLES,
        tags={"team": "storefront"},
    )
    out["rest_api_ids"] = {"demo-shop-api": api}
    out["rest_api_deployment_ids"] = {"demo-shop-api": deployment}
    out["rest_api_resource_ids"] = {"demo-shop-api": {f"/{part}": rid for part, rid in paths.items()}}
    out["rest_api_stage_arns"] = {"demo-shop-api/prod": f"arn:aws:execute-api:{region}:{account}:{api}/prod"}


def seed_http_api(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """API Gateway v2 HTTP API ``demo-edge-api`` in us-east-1 with an auto-deployed ``$default`` stage."""
    apigw = client("apigatewayv2", SECOND_REGION, endpoint, account)
    api = apigw.create_api(Name="demo-edge-api", ProtocolType="HTTP", Tags={"team": "platform"})["ApiId"]
    apigw.create_stage(ApiId=api, StageName="$default", AutoDeploy=True, Tags={"team": "platform"})
    out["http_api_ids"] = {"demo-edge-api": api}


def _fulfilment_definition(out: dict[str, Any], account: str) -> dict[str, Any]:
    """The ``order-fulfilment`` state machine: one state per integration the StackPack parses."""
    region = MAIN_REGION
    functions = out["lambda_function_arns"]
    api = out["rest_api_ids"]["demo-shop-api"]
    notify = {"Type": "Task", "Resource": functions["event-router"], "End": True}
    return {
        "Comment": "Demo order fulfilment",
        "StartAt": "Validate",
        "States": {
            "Validate": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": f"{functions['order-processor']}:live", "Payload.$": "$"},
                "Next": "Route",
            },
            "Route": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.express", "BooleanEquals": True, "Next": "Express"},
                    {"Variable": "$.manual", "BooleanEquals": True, "Next": "Approve"},
                ],
                "Default": "Store",
            },
            "Express": {
                "Type": "Task",
                "Resource": "arn:aws:states:::ecs:runTask.sync",
                "Parameters": {
                    "Cluster": out["ecs_cluster_arns"]["demo-cluster"],
                    "TaskDefinition": out["ecs_task_definition_arns"]["report-job"],
                    "LaunchType": "EC2",
                },
                "Next": "Store",
            },
            "Approve": {"Type": "Task", "Resource": out["activity_arns"]["manual-approval"], "Next": "Store"},
            "Store": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:putItem",
                "Parameters": {"TableName": "orders", "Item": {"order_id": {"S.$": "$.id"}}},
                "Next": "Fanout",
            },
            "Fanout": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "Enqueue",
                        "States": {
                            "Enqueue": {
                                "Type": "Task",
                                "Resource": "arn:aws:states:::sqs:sendMessage",
                                "Parameters": {
                                    "QueueUrl": f"https://sqs.{region}.amazonaws.com/{account}/orders",
                                    "MessageBody.$": "$",
                                },
                                "End": True,
                            }
                        },
                    },
                    {
                        "StartAt": "Announce",
                        "States": {
                            "Announce": {
                                "Type": "Task",
                                "Resource": "arn:aws:states:::sns:publish",
                                "Parameters": {
                                    "TopicArn": out["topic_arns"]["order-events"],
                                    "Message.$": "$",
                                },
                                "End": True,
                            }
                        },
                    },
                ],
                "Next": "NotifyLines",
            },
            "NotifyLines": {
                "Type": "Map",
                "ItemsPath": "$.lines",
                "Iterator": {"StartAt": "NotifyLine", "States": {"NotifyLine": notify}},
                "Next": "PriceLines",
            },
            "PriceLines": {
                "Type": "Map",
                "ItemsPath": "$.lines",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "PriceLine",
                    "States": {"PriceLine": {"Type": "Pass", "End": True}},
                },
                "Next": "CallApi",
            },
            "CallApi": {
                "Type": "Task",
                "Resource": "arn:aws:states:::apigateway:invoke",
                "Parameters": {
                    "ApiEndpoint": f"{api}.execute-api.{region}.amazonaws.com",
                    "Method": "GET",
                    "Stage": "prod",
                    "Path": "/orders",
                },
                "Next": "Notify",
            },
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::states:startExecution",
                "Parameters": {"StateMachineArn": out["state_machine_arns"]["order-notify"], "Input.$": "$"},
                "End": True,
            },
        },
    }


def seed_step_functions(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Activity ``manual-approval``, the small machine ``order-notify`` and ``order-fulfilment``."""
    sfn = client("stepfunctions", MAIN_REGION, endpoint, account)
    role = out["iam_role_arns"]["states"]
    out["activity_arns"] = {
        "manual-approval": sfn.create_activity(
            name="manual-approval", tags=lower_tags({"team": "storefront"})
        )["activityArn"]
    }
    notify = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    out["state_machine_arns"] = {
        "order-notify": sfn.create_state_machine(
            name="order-notify", definition=json.dumps(notify), roleArn=role
        )["stateMachineArn"]
    }
    out["state_machine_arns"]["order-fulfilment"] = sfn.create_state_machine(
        name="order-fulfilment",
        definition=json.dumps(_fulfilment_definition(out, account), indent=2),
        roleArn=role,
        tags=lower_tags({"team": "storefront", "stackstate-environment": "production"}),
    )["stateMachineArn"]


def _nested_template() -> dict[str, Any]:
    """The nested stack: an audit queue and an alerts topic."""
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "AuditQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "inventory-audit"}},
            "AlertsTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "inventory-alerts"}},
        },
    }


def _parent_template(out: dict[str, Any], nested_url: str) -> dict[str, Any]:
    """The ``demo-inventory`` stack: queue, topic, table, function, bucket, security group, nested stack."""
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "UpdatesQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "inventory-updates"}},
            "EventsTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "inventory-events"}},
            "InventoryTable": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "TableName": "inventory",
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "sku", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "sku", "KeyType": "HASH"}],
                },
            },
            "SyncFunction": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "FunctionName": "inventory-sync",
                    "Runtime": "python3.12",
                    "Handler": "index.handler",
                    "Role": out["iam_role_arns"]["lambda"],
                    "Code": {"ZipFile": "def handler(event, context):\n    return event\n"},
                },
            },
            "ExportBucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"BucketName": "demo-inventory-exports-eu"},
            },
            "SyncSecurityGroup": {
                "Type": "AWS::EC2::SecurityGroup",
                "Properties": {
                    "GroupName": "inventory-sync",
                    "GroupDescription": "inventory sync function",
                    "VpcId": out["vpc_id"],
                },
            },
            "AuditStack": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": nested_url}},
        },
    }


def seed_cloudformation(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Stack ``demo-inventory`` (several supported types) with nested stack ``AuditStack``.

    The nested template is read from S3 bucket ``demo-cfn-templates-eu``. Every created resource is
    added to the matching id map (queues, topics, tables, functions, buckets, security groups).
    """
    region = MAIN_REGION
    s3 = client("s3", region, endpoint, account)
    bucket(s3, _TEMPLATE_BUCKET, region, {"team": "platform"})
    s3.put_object(Bucket=_TEMPLATE_BUCKET, Key=_NESTED_KEY, Body=json.dumps(_nested_template()).encode())
    nested_url = f"https://s3.{region}.amazonaws.com/{_TEMPLATE_BUCKET}/{_NESTED_KEY}"
    cfn = client("cloudformation", region, endpoint, account)
    parent = cfn.create_stack(
        StackName="demo-inventory",
        TemplateBody=json.dumps(_parent_template(out, nested_url)),
        Tags=tags(team="inventory", **{"stackstate-environment": "production"}),
    )["StackId"]
    resources = {
        r["LogicalResourceId"]: r
        for r in cfn.list_stack_resources(StackName=parent)["StackResourceSummaries"]
    }
    nested = resources["AuditStack"]["PhysicalResourceId"]  # the child stack's ARN
    nested_name = cfn.describe_stacks(StackName=nested)["Stacks"][0]["StackName"]
    out["stack_ids"] = {"demo-inventory": parent, nested_name: nested}
    out["stack_resources"] = {
        "demo-inventory": {logical: r["PhysicalResourceId"] for logical, r in sorted(resources.items())},
        nested_name: {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.list_stack_resources(StackName=nested)["StackResourceSummaries"]
        },
    }
    _record_stack_resources(endpoint, account, out)


def _record_stack_resources(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Add what the stacks created to the per-type id maps, keyed by name."""
    region = MAIN_REGION
    sqs = client("sqs", region, endpoint, account)
    for name in ("inventory-updates", "inventory-audit"):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        out["queue_urls"][name] = url
        out["queue_arns"][name] = f"arn:aws:sqs:{region}:{account}:{name}"
    for name in ("inventory-events", "inventory-alerts"):
        out["topic_arns"][name] = f"arn:aws:sns:{region}:{account}:{name}"
    out["dynamodb_table_arns"]["inventory"] = f"arn:aws:dynamodb:{region}:{account}:table/inventory"
    out["lambda_function_arns"]["inventory-sync"] = (
        f"arn:aws:lambda:{region}:{account}:function:inventory-sync"
    )
    out["buckets"][_TEMPLATE_BUCKET] = region
    out["buckets"]["demo-inventory-exports-eu"] = region
    out["security_group_ids"]["inventory-sync"] = out["stack_resources"]["demo-inventory"][
        "SyncSecurityGroup"
    ]


def seed_route53(endpoint: str, account: str, out: dict[str, Any]) -> None:
    """Register ``demo-shop.com`` (Route 53 Domains, us-east-1), which creates its public hosted zone,
    then add records: ``www`` alias to the ALB, ``api`` CNAME to the REST API, an MX and a TXT record.
    """
    contact = {
        "FirstName": "Demo",
        "LastName": "Owner",
        "ContactType": "COMPANY",
        "OrganizationName": "Demo Shop",
        "AddressLine1": "1 Example Street",
        "City": "Amsterdam",
        "CountryCode": "NL",
        "ZipCode": "1000AA",
        "PhoneNumber": "+31.201234567",
        "Email": "hostmaster@demo-shop.com",
    }
    domains = client("route53domains", SECOND_REGION, endpoint, account)
    domains.register_domain(
        DomainName="demo-shop.com",
        DurationInYears=2,  # moto rejects 1
        AdminContact=contact,
        RegistrantContact=contact,
        TechContact=contact,
        AutoRenew=True,
    )
    domains.update_tags_for_domain(DomainName="demo-shop.com", TagsToUpdate=tags(team="storefront"))
    route53 = client("route53", SECOND_REGION, endpoint, account)
    zone = next(
        z["Id"]
        for z in route53.list_hosted_zones()["HostedZones"]
        if z["Name"].rstrip(".") == "demo-shop.com"
    ).removeprefix("/hostedzone/")
    route53.change_tags_for_resource(
        ResourceType="hostedzone", ResourceId=zone, AddTags=tags(team="storefront")
    )
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": _records(out)})
    out["domains"] = ["demo-shop.com"]
    out["hosted_zone_ids"]["demo-shop.com"] = zone


def _records(out: dict[str, Any]) -> list[dict[str, Any]]:
    """The record changes for ``demo-shop.com``."""
    api = out["rest_api_ids"]["demo-shop-api"]

    def record(name: str, kind: str, *values: str, ttl: int = 300) -> dict[str, Any]:
        return {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": name,
                "Type": kind,
                "TTL": ttl,
                "ResourceRecords": [{"Value": value} for value in values],
            },
        }

    alb = out["load_balancer_dns"]["demo-alb"]
    www = {
        "Action": "CREATE",
        "ResourceRecordSet": {
            "Name": "www.demo-shop.com.",
            "Type": "A",
            "AliasTarget": {
                "HostedZoneId": alb["CanonicalHostedZoneId"],
                "DNSName": f"dualstack.{alb['DNSName']}.",
                "EvaluateTargetHealth": False,
            },
        },
    }
    return [
        www,
        record("api.demo-shop.com.", "CNAME", f"{api}.execute-api.{MAIN_REGION}.amazonaws.com"),
        record("demo-shop.com.", "MX", "10 mail.demo-shop.com."),
        record("demo-shop.com.", "TXT", '"v=spf1 -all"'),
    ]
