"""Tests of engine/deploy/."""
