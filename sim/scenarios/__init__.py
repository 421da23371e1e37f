"""Scripted customer sessions for headless runs, the demo and soak tests."""
