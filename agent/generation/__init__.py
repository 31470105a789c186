"""Generation: provisioning the model files, loading the model (+ LoRA adapter), the prompt, greedy decoding.

* :mod:`~agent.generation.provision` — a model setting → a local Hugging Face model directory (pinned, hash-checked);
* :mod:`~agent.generation.loading` — the loaded model, tokenizer and the versions every turn records;
* :mod:`~agent.generation.prompt` — the chat prompt with exact token spans per passage;
* :mod:`~agent.generation.decoding` — streamed greedy decoding with a key/value cache;
* :mod:`~agent.generation.fastdecode` — the fast decoder (own forward pass, preallocated cache, prompt-prefix reuse),
  with :mod:`~agent.generation.packing` (the exact 4/8-bit blocks behind the fp32 weights),
  :mod:`~agent.generation.kernels` (their C matrix-vector kernels) and :mod:`~agent.generation.cstep` (a whole
  decode step in one C call).

Importing this package imports nothing heavy; torch and transformers load when a model does.
"""
