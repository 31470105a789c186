"""Moments agent: the turn pipeline and what it stands on.

``pipeline`` (the Agent), ``conversation`` (stored conversations, history from the store), ``turn`` (the typed
finished turn), ``settings``, ``vocabulary``, ``errors``; sub-packages ``generation`` (model files, loading, prompt,
decoding), ``attribution`` (explanations), ``store`` (the conversation store), ``training`` (LoRA) and ``cli``.
The agent imports ``retrieval`` and never ``ui``.
"""

__version__ = "0.1.0"
