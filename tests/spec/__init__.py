"""Tests of engine/spec/."""
