"""FileSink: one pretty, sorted, UTF-8 JSON file per payload, written atomically; a failure is a
DeliveryError."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from engine.core.errors import DeliveryError
from engine.delivery import sinks
from engine.delivery.sinks import FileSink


def test_a_payload_is_one_sorted_pretty_utf8_file_named_after_it(tmp_path: Path, caplog) -> None:
    sink = FileSink(tmp_path / "out" / "run-1")  # created, parents too
    assert repr(sink) == f"FileSink({str(tmp_path / 'out' / 'run-1')!r})"
    with caplog.at_level(logging.DEBUG, logger="engine.delivery.sinks"):
        sink.send({"b": "é", "a": [1]}, "scan-1-0001")
    target = tmp_path / "out" / "run-1" / "scan-1-0001.json"
    assert target.read_bytes() == '{\n  "a": [\n    1\n  ],\n  "b": "é"\n}\n'.encode()
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": [1], "b": "é"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["scan-1-0001.json"]
    assert [r.getMessage() for r in caplog.records] == [f"event=sink.written path={target}"]


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError) as refused:
        FileSink(tmp_path).send({}, name)
    assert str(refused.value) == f"payload name {name!r} is not a plain file name"
    assert list(tmp_path.iterdir()) == []


def test_the_file_is_written_beside_its_target_then_renamed(tmp_path: Path, monkeypatch) -> None:
    renamed: list[tuple[str, str]] = []
    replace = os.replace
    monkeypatch.setattr(sinks.os, "replace", lambda src, dst: renamed.append((src, dst)) or replace(src, dst))
    FileSink(tmp_path).send({"k": 1}, "events-1-0001")
    [(src, dst)] = renamed
    assert Path(src).parent == tmp_path and Path(dst) == tmp_path / "events-1-0001.json"
    assert Path(src).name.startswith(".events-1-0001.") and src.endswith(".tmp")


def test_a_write_that_fails_is_a_delivery_error_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch
) -> None:
    def full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sinks.os, "replace", full)
    with pytest.raises(DeliveryError) as failed:
        FileSink(tmp_path).send({"k": 1}, "scan-1-0001")
    assert failed.value.target == str(tmp_path / "scan-1-0001.json")
    assert failed.value.problem == "scan-1-0001: [Errno 28] No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_a_failure_without_an_http_status_is_not_a_rejection() -> None:
    from engine.delivery.sinks import is_rejection

    assert is_rejection(DeliveryError(target="files", problem="disk full")) is False
