"""Tests of engine/delivery/."""
