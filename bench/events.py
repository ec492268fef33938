"""Benchmark: event deltas. Prints events/s for read + parse + dispatch, and API calls per refreshed resource.

1. 100,000 CloudTrail envelopes in 200 gzip objects (as Firehose writes them), held in memory: time to
   decompress and decode them (`eventbridge.each_envelope`), skip and match them (`delta._changes`:
   `Rules.dispatch`, which counts the skipped ones) and keep the last change per resource (`latest`), as the
   event delta does (each object under `gc_paused`), without its download (part 2). Re-description is
   excluded. The floor is the time to decompress (zlib) and `json.loads` the same objects and nothing else;
   each path's best wall time of `--rounds`, run in turn. `--stages`: the CPU seconds of each stage alone
   (best of 5), and the floor with the engine's inflate (ISA-L) for comparison. Run twice: on minimal
   envelopes (the fields the rules read, 0.3 KB) and on envelopes as AWS writes them (`_as_aws_writes_it`,
   1.5 KB).
2. Against a moto server, `--downloads` objects of 200 envelopes, each GetObject answered `--latency` seconds
   late (S3's time to first byte; moto answers at once): the delta's read of them (`_from_bucket`), one at a
   time and with `AHEAD` downloaded while one is read.
3. Against a moto server: N instances and N queues, one event each, applied with `apply_events`; prints the
   API calls the refresh made per refreshed resource (batched `get` where the API takes many ids).

    .venv/bin/python -m bench.events [--events 100000] [--objects 200] [--resources 300] [--rounds 5]
                                       [--downloads 100] [--latency 0.02] [--stages]
   (--downloads 0 --resources 0: no moto server)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from demo.seed import AMI_ID, client
from demo.server import reset, start
from engine.aws.fetch import Fetcher
from engine.aws.log_bucket import LogBucket
from engine.aws.sessions import assume
from engine.core import gunzip
from engine.core.config import Config, Instance
from engine.core.state import State
from engine.delivery.sinks import FileSink
from engine.events.delta import AHEAD, AccountDelta, _changes, _from_bucket, apply_events
from engine.events.eventbridge import Rules, each_envelope, envelopes, gc_paused, latest
from engine.language.loader import load_mappings

ACCOUNT = "123456789012"
REGION = "eu-west-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/StackStateAwsIntegrationRole"
INSTANCE = Instance(role_arn=ROLE, regions=(REGION,))


def _envelope(i: int) -> dict:
    kinds = [
        ("ec2.amazonaws.com", "StopInstances", {"responseElements": {"instancesSet": {"items": [
            {"instanceId": f"i-{i % 5000:017x}"}]}}}),
        ("sqs.amazonaws.com", "SetQueueAttributes", {"requestParameters": {
            "queueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/q-{i % 5000}"}}),
        ("sns.amazonaws.com", "DeleteTopic", {"requestParameters": {
            "topicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:t-{i % 5000}"}}),
        ("iam.amazonaws.com", "CreateRole", {"requestParameters": {"roleName": f"r-{i}"}}),  # no rule
    ]  # fmt: skip
    source, name, fields = kinds[i % len(kinds)]
    detail = {"eventSource": source, "eventName": name, "awsRegion": REGION, "eventID": f"e-{i}", **fields}
    return {"detail-type": "AWS API Call via CloudTrail", "source": "aws." + source.split(".")[0],
            "region": REGION, "detail": detail}  # fmt: skip


def _as_aws_writes_it(i: int) -> dict:
    """`_envelope(i)` with every field EventBridge and CloudTrail put in such an envelope (the caller's
    identity, the request's and TLS's details, ids and times): about 1.5 KB of JSON each, not 0.3 KB."""
    envelope = _envelope(i)
    detail, moment = envelope["detail"], f"2026-12-01T12:{i // 6000 % 60:02d}:{i // 100 % 60:02d}Z"
    role = f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/session-{i % 7}"
    host = detail["eventSource"].split(".")[0]
    identity = {
        "type": "AssumedRole", "principalId": f"AROAEXAMPLE{i % 7:09d}:session-{i % 7}", "arn": role,
        "accountId": ACCOUNT, "accessKeyId": f"ASIAEXAMPLE{i % 7:09d}",
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": f"AROAEXAMPLE{i % 7:09d}",
                              "arn": f"arn:aws:iam::{ACCOUNT}:role/deployer", "accountId": ACCOUNT,
                              "userName": "deployer"},
            "webIdFederationData": {},
            "attributes": {"creationDate": "2026-12-01T11:02:03Z", "mfaAuthenticated": "false"},
        },
    }  # fmt: skip
    detail.update({
        "eventVersion": "1.09", "userIdentity": identity, "eventTime": moment,
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.17.1 md/awscrt#0.20.11 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.8",
        "requestID": f"{i:08x}-1b2c-4d5e-8f90-{i:012x}", "readOnly": False, "eventType": "AwsApiCall",
        "managementEvent": True, "recipientAccountId": ACCOUNT, "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                       "clientProvidedHostHeader": f"{host}.{REGION}.amazonaws.com"},
    })  # fmt: skip
    return {"version": "0", "id": f"{i:08x}-aaaa-bbbb-cccc-{i:012x}", **envelope, "account": ACCOUNT,
            "time": moment, "resources": []}  # fmt: skip


SHAPES = {"minimal": _envelope, "as AWS writes them": _as_aws_writes_it}


def objects(events: int, count: int, shape: Callable[[int], dict] = _envelope) -> list[bytes]:
    per = events // count
    return [
        gzip.compress("".join(json.dumps(shape(o * per + i)) for i in range(per)).encode())
        for o in range(count)
    ]


def dispatch(bodies: list[bytes], rules: Rules | None = None) -> tuple[float, int, int]:
    """What the delta does with each object read (`_changes`: skipped envelopes counted, rules matched),
    then `latest` over all of them: seconds, envelopes, changes kept."""
    rules = rules or Rules(load_mappings())
    result = AccountDelta(ACCOUNT, "bench")
    started = time.perf_counter()
    changes = []
    for body in bodies:
        with gc_paused():
            changes += _changes(each_envelope(body), rules, INSTANCE, result)
    kept = latest(changes)
    return time.perf_counter() - started, result.envelopes, len(kept)


def stages(bodies: list[bytes]) -> None:
    """The CPU seconds of each stage alone, best of 5, and each as a multiple of the floor's."""
    rules = Rules(load_mappings())
    decoded = [envelopes(body) for body in bodies]
    changes = [c for found in decoded for e in found for c in rules.changes(e, ACCOUNT, (REGION,))]

    def read() -> None:
        for body in bodies:
            for _ in each_envelope(body):
                pass

    def match() -> None:
        with gc_paused():
            for found in decoded:
                rules.dispatch(found, ACCOUNT, (REGION,))

    def collector_on() -> None:  # dispatch without gc_paused
        kept, result = [], AccountDelta(ACCOUNT, "bench")
        for body in bodies:
            kept += _changes(each_envelope(body), rules, INSTANCE, result)
        latest(kept)

    timed = {
        "floor (decompress + json decode)": lambda: floor(bodies),
        "floor with ISA-L's inflate (the engine's)": lambda: floor(bodies, _isal),
        "decompress": lambda: [gzip.decompress(body).decode() for body in bodies],
        "read (each_envelope)": read,
        "skip and match (Rules.dispatch, decoded)": match,
        "latest": lambda: latest(changes),
        "dispatch (read + skip + match + latest)": lambda: dispatch(bodies, rules),
        "dispatch, collector not paused": collector_on,
    }
    best = dict.fromkeys(timed, float("inf"))
    for _ in range(5):
        for name, run in timed.items():
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    base = best["floor (decompress + json decode)"]
    for name, seconds in best.items():
        print(f"  {name:44} {seconds:6.3f} s CPU  {seconds / base:5.2f}x floor")


def floor(bodies: list[bytes], inflate: Callable[[bytes], bytes] = gzip.decompress) -> float:
    decoder = json.JSONDecoder()
    started = time.perf_counter()
    for body in bodies:
        text, pos = inflate(body).decode(), 0
        while pos < len(text):
            _, pos = decoder.raw_decode(text, pos)
    return time.perf_counter() - started


def _isal(body: bytes) -> bytes:
    return gunzip.inflater().decompress(body)


@contextmanager
def _log_bucket() -> Iterator[tuple[str, Any, str]]:
    """A moto server with the account's versioned log bucket: its endpoint, an S3 client, the bucket."""
    server, endpoint = start(0)
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    try:
        reset(endpoint)
        s3, bucket = client("s3", REGION, endpoint), f"stackstate-logs-{ACCOUNT}"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        yield endpoint, s3, bucket
    finally:
        server.stop()


def refresh_calls(resources: int) -> tuple[int, int]:
    """API calls of one delta that refreshes `resources` instances and `resources` queues."""
    with _log_bucket() as (endpoint, s3, bucket):
        ec2, sqs = (client(s, REGION, endpoint) for s in ("ec2", "sqs"))
        ids = [i["InstanceId"] for i in ec2.run_instances(ImageId=AMI_ID, MinCount=resources,
                                                            MaxCount=resources)["Instances"]]  # fmt: skip
        urls = [sqs.create_queue(QueueName=f"q-{i}")["QueueUrl"] for i in range(resources)]
        events = [{"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
                   "region": REGION, "detail": {"instance-id": i, "state": "running"}}
                  for i in ids]  # fmt: skip
        events += [{"detail-type": "AWS API Call via CloudTrail", "source": "aws.sqs", "region": REGION,
                    "detail": {"eventSource": "sqs.amazonaws.com", "eventName": "TagQueue",
                               "awsRegion": REGION, "requestParameters": {"queueUrl": u}}}
                   for u in urls]  # fmt: skip
        key = f"AWSLogs/{ACCOUNT}/EventBridge/{REGION}/bench-2026-12-01-12-00-00-x"
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress("".join(map(json.dumps, events)).encode()))
        instance = Instance(role_arn=ROLE, regions=(REGION,), apis_to_run=("ec2", "sqs"))
        fetcher = Fetcher()
        with tempfile.TemporaryDirectory() as out, State(os.path.join(out, "s.sqlite")) as state:
            result = apply_events(
                Config(external_id="bench", instances=(instance,)), instance, load_mappings(), FileSink(out),
                state, fetcher, endpoint_url=endpoint,
            )  # fmt: skip
        assert result.complete, result
        return fetcher.calls, result.components


class _Distant(Fetcher):
    """The run's fetcher, with S3's time to first byte (`latency` seconds) before each GetObject."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency

    def call(self, account: Any, region: str, service: str, call: Any, params: dict[str, Any]) -> dict:
        if call.operation == "GetObject":
            time.sleep(self.latency)
        return super().call(account, region, service, call, params)


def downloads(count: int, latency: float, rounds: int) -> dict[int, float]:
    """Seconds to read `count` objects of 200 envelopes from moto (`_from_bucket`), each GetObject
    `latency` seconds late: per how many are downloaded ahead (0: one at a time), best of `rounds`."""
    with _log_bucket() as (endpoint, s3, bucket):
        for i, body in enumerate(objects(count * 200, count)):
            s3.put_object(Bucket=bucket, Key=f"AWSLogs/{ACCOUNT}/EventBridge/{REGION}/o-{i:05d}", Body=body)
        rules, fetcher = Rules(load_mappings()), _Distant(latency)
        account = assume(Config(external_id="bench", instances=(INSTANCE,)), INSTANCE, endpoint_url=endpoint)
        best = {0: float("inf"), AHEAD: float("inf")}
        with tempfile.TemporaryDirectory() as out, State(os.path.join(out, "s.sqlite")) as state:
            for _ in range(rounds):
                for ahead in best:
                    result = AccountDelta(ACCOUNT, bucket)
                    started = time.perf_counter()
                    read = _from_bucket(LogBucket(account, bucket, fetcher, state, "events"), INSTANCE, rules,
                                        state, result, ahead=ahead)  # fmt: skip
                    best[ahead] = min(best[ahead], time.perf_counter() - started)
                    assert len(read) == count + 1 and not result.corrupt, result  # and the delete source
        return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--resources", type=int, default=300)
    parser.add_argument("--downloads", type=int, default=100, help="objects read from moto (0: none)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds before each GetObject answers")
    parser.add_argument("--rounds", type=int, default=5, help="each path's best wall time of these")
    parser.add_argument("--stages", action="store_true", help="time each stage alone (CPU seconds)")
    args = parser.parse_args()

    rules = Rules(load_mappings())
    for name, shape in SHAPES.items():
        bodies = objects(args.events, args.objects, shape)
        runs = [(dispatch(bodies, rules), floor(bodies)) for _ in range(args.rounds)]  # side by side, in turn
        seconds, found, kept = min(run for run, _ in runs)
        base = min(floor_seconds for _, floor_seconds in runs)
        print(
            f"envelopes={name!r} events={found} objects={len(bodies)} changes_kept={kept} "
            f"seconds={seconds:.2f} events_per_second={found / seconds:,.0f} floor_seconds={base:.2f} "
            f"ratio dispatch/floor={seconds / base:.2f}"
        )
        if args.stages:
            stages(bodies)
    if args.downloads:
        one, ahead = downloads(args.downloads, args.latency, args.rounds).values()
        print(
            f"objects={args.downloads} latency_ms={args.latency * 1000:.0f} seconds_one_at_a_time={one:.2f} "
            f"seconds_{AHEAD}_ahead={ahead:.2f} ratio ahead/one={ahead / one:.2f}"
        )
    if args.resources:
        calls, refreshed = refresh_calls(args.resources)
        print(f"refreshed={refreshed} calls={calls} calls_per_refreshed_resource={calls / refreshed:.2f}")


if __name__ == "__main__":
    main()
