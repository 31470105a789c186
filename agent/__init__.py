"""Moments agent: the turn pipeline (settings, model provisioning, prompt, generation, attribution, store, CLI)."""

__version__ = "0.1.0"
