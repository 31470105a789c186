"""One speed probe of ``bench/speed.py``: one configuration, one fresh process, one torch / llama.cpp thread.

    python bench/speed_probe.py CONFIG '{"reply_tokens": 40}'      # prints one JSON line (the last line)

``CONFIG`` is ``fast`` (the default: :class:`agent.generation.fastdecode.FastDecoder`), ``hf`` (transformers fp32
step by step), ``hf-int8`` (torch dynamic int8) or ``llama.cpp`` (the shipped Q4_1 GGUF through the prebuilt
``ik-llama-cpp-python`` wheel, a llama.cpp fork; the base model without the LoRA adapter, which llama.cpp is not
given). Every probe measures the same things on the same prompts (see ``bench/speed.py``); what a configuration
cannot do is left out of its JSON (llama.cpp: the next-turn prefix reuse, which the wheel's API does not expose, and
both explanations, which need the fp32 transformers model).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code

Q1 = "How long do I have to return an item?"
Q2 = "Can I change the delivery address of my order?"
#: the turn timed end to end (retrieval, focus, reply) and explained (estimate, then exact)
TURN_QUESTION = "I'm a Gold member, how long do I have to return stuff?"
_FP32 = {"prefill_precision": "fp32", "embed_precision": "fp32"}  # float32 throughout (the bfloat16 settings off)
TORCH = {"fast": {"decoder": "fast"}, "fast-fp32": {"decoder": "fast", **_FP32}, "hf": {"decoder": "hf", **_FP32},
         "hf-int8": {"decoder": "hf", "quantize": True, **_FP32}}


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def fixed_prompts(settings, tokenizer, version: str) -> dict[str, list[int]]:
    """The bench prompts: ~400 tokens (4 KB files cut to 260 chars), ~1,200 tokens (1,000 chars), and a next
    turn's ~400 tokens (other files, other question) sharing the system prompt."""
    from agent.generation.prompt import build_prompt
    from retrieval.types import Passage

    kb = sorted(settings.kb_path.glob("*.md"))

    def prompt(n_chars: int, question: str, first: int = 0) -> list[int]:
        passages = [Passage(p.stem, p.stem, p.stem, p.read_text()[:n_chars]) for p in kb[first:first + 4]]
        return build_prompt(tokenizer, question, passages, version=version).input_ids

    return {"short": prompt(260, Q1), "long": prompt(1000, Q1), "other": prompt(260, Q2, first=4)}


def torch_probe(name: str) -> dict:
    from agent.attribution import attribute
    from agent.generation.decoding import fast_decoder, greedy_ids, stream_tokens
    from agent.generation.loading import load_generator
    from agent.pipeline import Agent
    from agent.settings import Settings

    s = Settings(threads=1, **TORCH[name])
    t = time.perf_counter()
    g = load_generator(s)
    out: dict = {"load_s": time.perf_counter() - t}
    dec = fast_decoder(g.model)
    ids = fixed_prompts(s, g.tokenizer, g.prompt_version)
    out["short_tokens"], out["long_tokens"] = len(ids["short"]), len(ids["long"])

    def first_token(prompt: list[int]) -> tuple[float, float]:
        start = _clock()
        it = greedy_ids(g.model, prompt, 1)
        next(it)
        return _since(start)

    if dec is not None:
        dec.reuse_prefix = False  # cold prefill first
    first_token(ids["short"])  # warm-up (allocators, kernels)
    out["first_short_s"], out["first_short_cpu_s"] = first_token(ids["short"])
    out["first_long_s"], out["first_long_cpu_s"] = first_token(ids["long"])
    out["prefill_tok_s"] = (len(ids["long"]) - 1) / out["first_long_s"]
    if dec is not None:
        dec.reuse_prefix = True
        first_token(ids["other"])  # the previous turn (other passages, other question)
        out["first_next_s"], out["first_next_cpu_s"] = first_token(ids["short"])  # shares the system prompt
        out["reused_tokens"] = dec.reused_tokens
        dec.reuse_prefix = False
    n = 64
    it = greedy_ids(g.model, ids["short"], n + 1)
    next(it)
    start = _clock()
    for _ in range(n):
        next(it)
    wall, cpu = _since(start)
    out["decode_tok_s"], out["decode_cpu_ms"] = n / wall, cpu / n * 1e3
    t = time.perf_counter()
    steps = list(stream_tokens(g.model, g.tokenizer, ids["short"], s.max_new_tokens))
    out["reply_s"], out["reply_tokens"] = time.perf_counter() - t, len(steps)
    out["reply"] = "".join(x.text for x in steps)
    if dec is not None:
        dec.reuse_prefix = True  # as the app runs

    # whole turns through the pipeline, then their explanations (what the operator waits for)
    for mode in ("quote", "generate"):
        agent = Agent(Settings(threads=1, answer_mode=mode, **TORCH[name]), generator=g)
        agent.ask(Q2)  # warm-up: index, embedder, focus
        start = _clock()
        result = agent.ask(TURN_QUESTION)
        out[f"turn_{mode}_s"], out[f"turn_{mode}_cpu_s"] = _since(start)
        out[f"turn_{mode}_tokens"], out[f"turn_{mode}_k"] = len(result.token_ids), len(result.hits)
        out[f"turn_{mode}_reply"] = result.answer
        out[f"turn_{mode}_prompt_tokens"] = len(result.layout.input_ids) if result.layout else 0
        if not result.token_ids:
            continue  # handed over: nothing to explain
        args = (result.layout, result.token_ids, result.token_texts, [h.passage for h in result.hits],
                [h.score for h in result.hits])
        for method, key in (("learned", "estimate"), ("shapley", "exact")):
            start = _clock()
            exp, _ = attribute(g, *args, method=method)
            out[f"{key}_{mode}_s"], out[f"{key}_{mode}_cpu_s"] = _since(start)
            out[f"{key}_{mode}_estimator"] = exp.estimator
    return out


def llama_cpp_probe(reply_tokens: int) -> dict:
    """The shipped Q4_1 GGUF in llama.cpp (1 thread): the same prompt ids; a full turn decodes ``reply_tokens``
    greedy steps (the default's reply length on that prompt: the base model without the adapter says other words)."""
    import numpy as np
    from ik_llama_cpp import IkLlama
    from ik_llama_cpp import _ctypes_api as C
    from ik_llama_cpp._internals import make_batch_range, make_batch_single
    from transformers import AutoTokenizer

    from agent.generation.loading import adapter_prompt_version, resolve_adapter
    from agent.generation.provision import resolve_model
    from agent.pipeline import Agent
    from agent.settings import Settings

    s = Settings(threads=1)
    gguf = s.models_dir / "downloads" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        raise SystemExit(f"{gguf} is missing: run `moments ask` once to provision the model")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(s.model, s.models_dir)))
    version = adapter_prompt_version(resolve_adapter(s))
    t = time.perf_counter()
    llm = IkLlama(str(gguf), n_ctx=2048, n_threads=1, verbose=False, flash_attn=False)
    out: dict = {"load_s": time.perf_counter() - t}
    ctx, n_vocab = llm._context, llm._model.n_vocab
    ids = fixed_prompts(s, tokenizer, version)
    out["short_tokens"], out["long_tokens"] = len(ids["short"]), len(ids["long"])

    def decode(batch) -> int:
        code = ctx.decode(batch)
        C.llama_batch_free(batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        return int(np.ctypeslib.as_array(ctx.get_logits(-1), shape=(n_vocab,)).argmax())  # greedy

    def prefill(prompt: list[int]) -> int:
        ctx.kv_cache_clear()
        return decode(make_batch_range(prompt, pos_start=0, logits_last=True))

    def greedy(prompt: list[int], n: int) -> list[int]:
        token, pos, got = prefill(prompt), len(prompt), []
        for _ in range(n):
            got.append(token)
            token = decode(make_batch_single(token, pos))
            pos += 1
        return got

    def first_token(prompt: list[int]) -> tuple[float, float]:
        start = _clock()
        prefill(prompt)
        return _since(start)

    first_token(ids["short"])  # warm-up
    out["first_short_s"], out["first_short_cpu_s"] = first_token(ids["short"])
    out["first_long_s"], out["first_long_cpu_s"] = first_token(ids["long"])
    out["prefill_tok_s"] = (len(ids["long"]) - 1) / out["first_long_s"]
    n = 64
    token, pos = prefill(ids["short"]), len(ids["short"])
    start = _clock()
    for _ in range(n):
        token = decode(make_batch_single(token, pos))
        pos += 1
    wall, cpu = _since(start)
    out["decode_tok_s"], out["decode_cpu_ms"] = n / wall, cpu / n * 1e3
    t = time.perf_counter()
    reply = greedy(ids["short"], reply_tokens)
    out["reply_s"], out["reply_tokens"] = time.perf_counter() - t, len(reply)
    out["reply"] = llm.detokenize(reply)

    # a generated turn: the pipeline's retrieval and focus (as Agent.stream runs them), the prompt, then llama.cpp
    from dataclasses import replace

    from agent.generation.prompt import build_prompt
    from retrieval.followup import DEFAULT_METHOD

    agent = Agent(Settings(threads=1, answer_mode="generate"), generator=object())  # no torch generator here
    follow = replace(DEFAULT_METHOD, turns=s.history_turns)

    def turn(question: str) -> list[int]:
        hits = agent.index.search_conversation(question, [], s.top_k, follow)
        hits = agent.focus.select(question, hits, s.quote_sentences).hits
        layout = build_prompt(tokenizer, question, [h.passage for h in hits], version=version)
        return greedy(layout.input_ids, reply_tokens)

    turn(Q2)  # warm-up: index, embedder
    start = _clock()
    got = turn(TURN_QUESTION)
    out["turn_generate_s"], out["turn_generate_cpu_s"] = _since(start)
    out["turn_generate_tokens"], out["turn_generate_reply"] = len(got), llm.detokenize(got)
    llm.close()
    return out


def main() -> None:
    name = sys.argv[1]
    args = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    load = os.getloadavg()[0]
    out = llama_cpp_probe(int(args.get("reply_tokens", 40))) if name == "llama.cpp" else torch_probe(name)
    out["loadavg"] = [load, os.getloadavg()[0]]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
