"""Tests of engine/flowlogs/."""
