"""LoRA training of the generator: the training examples, the two recipes, and the training loop.

* :mod:`~agent.training.data` — the "dstc" recipe's examples (DSTC9/DSTC11, data/kb, Bitext), split by entity;
* :mod:`~agent.training.facts` — the "facts" recipe (targets copy the answering sentence, cited);
* :mod:`~agent.training.train` — the peft training loop, checkpoints, ``moments train``.
"""
