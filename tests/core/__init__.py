"""Tests of engine/core/."""
