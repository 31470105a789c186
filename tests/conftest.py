"""Shared fixtures: real components, isolated homes.

Models are provisioned once per machine in the shared model cache (``~/.cache/moments/models``, or
``MOMENTS_TEST_MODELS`` when set) so that every test session reuses the converted safetensors; everything else
(index, database) lives in a temporary data home per session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODELS = Path(os.environ.get("MOMENTS_TEST_MODELS", "~/.cache/moments/models")).expanduser()


def make_settings(home: Path, **overrides):
    from agent.settings import Settings

    return Settings(home=home, models_path=MODELS, **overrides)


@pytest.fixture(scope="session")
def session_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("moments-home")


@pytest.fixture(scope="session")
def settings(session_home):
    """Default settings (embedded model, project KB, SQLite) in a temporary data home."""
    return make_settings(session_home)


@pytest.fixture(scope="session")
def generator(settings):
    from agent.generation.loading import load_generator

    return load_generator(settings)


@pytest.fixture(scope="session")
def kb_index(settings):
    from retrieval.index import KnowledgeIndex, index_dir_for

    return KnowledgeIndex.load_or_build(settings.kb_path, index_dir_for(settings.index_dir, settings.kb_path),
                                        settings.embedder, settings.chunk_tokens, progress=False)


@pytest.fixture(scope="session")
def agent(settings, generator, kb_index):
    from agent.pipeline import Agent

    return Agent(settings, generator=generator, index=kb_index)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """An empty database on each back end: a SQLite file, and a fresh schema on the real PostgreSQL server."""
    from agent.store.testing import empty_database

    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(db_url):
    from agent.store import Store

    with Store(db_url) as s:
        yield s
