"""Tests of engine/view/."""
