"""LoRA training of the generator: training examples by source, the two recipes, and the training loop.

* :mod:`~agent.training.data` — the example type, the "dstc" recipe's config, reply pools, citations, the entity
  split and encoding (what every source shares);
* :mod:`~agent.training.dstc`, :mod:`~agent.training.kb`, :mod:`~agent.training.bitext` — examples by source;
* :mod:`~agent.training.mix` — the "dstc" recipe: those sources mixed into one data set, split by entity;
* :mod:`~agent.training.facts` — the "facts" recipe (targets copy the answering sentence, cited);
* :mod:`~agent.training.train` — the peft training loop, checkpoints, ``moments train``.
"""
