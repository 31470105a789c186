"""The fast decoder: exact packed weights, kernels equal to fp32 Linear, and the faithfulness check.

Fast lane: the block recovery (exact or refused), the C kernels against ``torch.nn.functional.linear`` (with a LoRA
side path and fused groups), the fast decoder against transformers on a tiny random Llama whose weights are put on
the Q4_1 grid. Slow: the real default generator decodes the same tokens with both backends, and the fp32
full-context re-scoring that the explanation uses picks the generated token at (nearly) every position.
"""

from __future__ import annotations

import pytest
import torch

from agent.generation.packing import (
    PackedLinear,
    pack_group,
    pack_head,
    recover_q4_1,
    recover_q8_0,
)


def q4_1_weight(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """A weight that is exactly a Q4_1 dequantization (float16 d and m, q in 0..15, each block spanning 0..15)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (n, k // 32, 32), generator=g).float()
    q[..., 0], q[..., 1] = 0, 15
    d = (torch.rand(n, k // 32, generator=g) * 0.02 + 1e-3).half().float()
    m = (-d * (7 + torch.rand(n, k // 32, generator=g))).half().float()  # roughly centred on zero
    return (q * d[..., None] + m[..., None]).reshape(n, k)


def q8_0_weight(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """A weight that is exactly a Q8_0 dequantization (float16 d, q in -127..127, each block reaching 127)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-127, 128, (n, k // 32, 32), generator=g).float()
    q[..., 0] = 127
    d = (torch.rand(n, k // 32, generator=g) * 0.02 + 1e-3).half().float()
    return (q * d[..., None]).reshape(n, k)


@pytest.fixture(scope="module", params=["native", "avx2"])
def lib(request, tmp_path_factory):
    """The kernels built for this CPU, and built for AVX2 alone (the path of CPUs without AVX-512)."""
    from pathlib import Path

    from agent.generation.kernels import load_kernels

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if request.param == "avx2" and not all(f" {flag}" in flags for flag in ("avx2", "fma")):
        pytest.skip("this CPU has no AVX2")
    lib = load_kernels(tmp_path_factory.mktemp("kernels"), march=request.param)
    if lib is None:
        pytest.skip("no C compiler or no AVX2/AVX-512 here: the fast decoder falls back to fp32 weights")
    if request.param == "avx2":
        assert lib.simd_level() == 256
    return lib


def test_recovery_is_exact_or_refused():
    w = q4_1_weight(8, 64)
    packed, dm = recover_q4_1(w)
    q = torch.stack([packed & 15, packed >> 4], dim=-1)  # (n, k/2, 2): byte j holds q[j] and q[j + 16]
    q = q.reshape(8, 2, 16, 2).permute(0, 1, 3, 2).reshape(8, 2, 32).float()
    assert torch.equal(q * dm[..., :1] + dm[..., 1:], w.reshape(8, 2, 32))
    nudged = w.clone()
    nudged[3, 5] += 1e-4
    assert recover_q4_1(nudged) is None  # one weight off the grid: not packed, kept in fp32
    assert recover_q4_1(torch.randn(8, 64)) is None
    e = q8_0_weight(16, 64)
    q8 = recover_q8_0(e)
    assert q8 is not None and torch.equal(q8[0].float().reshape(16, 2, 32) * q8[1][..., None], e.reshape(16, 2, 32))
    assert recover_q8_0(torch.randn(16, 64)) is None


def test_kernels_match_fp32_linear_with_lora_and_fusion(lib):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = torch.nn.ModuleDict({"a": torch.nn.Linear(96, 64, bias=False), "b": torch.nn.Linear(96, 32, bias=False)})
    net["a"].weight.data = q4_1_weight(64, 96, 1)
    net["b"].weight.data = q4_1_weight(32, 96, 2)
    wrapped = get_peft_model(torch.nn.Sequential(net), LoraConfig(r=4, lora_alpha=8, target_modules=["a"]))
    torch.nn.init.normal_(wrapped.base_model.model[0]["a"].lora_B["default"].weight)  # a non-zero update
    fused = pack_group(lib, [wrapped.base_model.model[0]["a"], wrapped.base_model.model[0]["b"]])
    assert isinstance(fused, PackedLinear) and fused.lora is not None
    merged = wrapped.merge_and_unload()[0]
    x = torch.randn(96)
    expected = torch.cat([merged["a"](x), merged["b"](x)])
    assert torch.allclose(fused(x), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(merged["a"].weight, q4_1_weight(64, 96, 1))  # the LoRA did change the function

    head = q8_0_weight(500, 64)
    lin = pack_head(lib, head)
    assert lin.kind == "q8" and torch.allclose(lin(x[:64]), head @ x[:64], rtol=1e-5, atol=1e-5)
    assert pack_group(lib, [torch.nn.Linear(96, 8)]) is None  # random weights are not packed


def tiny_llama(seed: int = 0, kind: str = "llama"):
    """A 2-layer random Llama (or Qwen2: biased q/k/v) with every Linear on the Q4_1 grid and a Q8_0 tied
    embedding."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    torch.manual_seed(seed)
    config, cls = (LlamaConfig, LlamaForCausalLM) if kind == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    cfg = config(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                 attn_implementation="eager")
    model = cls(cfg).eval()
    for lin in model.modules():
        if isinstance(lin, torch.nn.Linear) and lin.bias is not None:
            torch.nn.init.normal_(lin.bias, std=0.5)
    for i, lin in enumerate(m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features != 320):
        lin.weight.data = q4_1_weight(*lin.weight.shape, seed=i) * 8
    emb = model.get_input_embeddings().weight
    emb.data = q8_0_weight(*emb.shape) * 4
    return model


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_fast_decoder_equals_transformers_on_a_tiny_model(lib, kind):
    from agent.generation.decoding import FAST_DECODER_ATTR, greedy_ids
    from agent.generation.fastdecode import FastDecoder, pack_model, supported

    model = tiny_llama(kind=kind)
    if kind == "qwen2":
        assert model.model.layers[0].self_attn.q_proj.bias is not None
    assert supported(model)
    packed = pack_model(lib, model)
    assert len(packed) == 2 * 4 + 1  # every group of both layers and the head
    decoder = FastDecoder(model, packed)
    assert decoder.lib is not None  # every projection packed: a decode step is one C call
    setattr(model, FAST_DECODER_ATTR, decoder)
    prompt = torch.randint(0, 320, (40,)).tolist()
    fast = list(greedy_ids(model, prompt, 24, backend="fast"))
    ref = list(greedy_ids(model, prompt, 24, backend="hf"))
    assert fast == ref and len(set(ref)) > 5  # a reply that moves, not one token repeated
    # and the logits themselves, teacher-forced over prompt + reply, against the decoder's step by step choices
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + fast[:-1]])).logits[0, len(prompt) - 1:]
    assert logits.argmax(-1).tolist() == fast
    # a second prompt sharing its first 30 tokens: those come from the kept cache, the rest is prefilled after them
    other = prompt[:30] + torch.randint(0, 320, (14,)).tolist()
    assert list(greedy_ids(model, other, 24, backend="fast")) == list(greedy_ids(model, other, 24, backend="hf"))
    assert decoder.reused_tokens == 30
    torch_step = FastDecoder(model, packed, c_step=False)  # the same step written with torch calls
    assert torch_step.lib is None and list(torch_step.greedy(prompt, 24)) == ref
    fp32_only = FastDecoder(model, {})  # no packed weights at all: the same tokens from fp32
    assert list(fp32_only.greedy(prompt, 24)) == ref


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_the_bf16_prefill_computes_the_same_network_within_bfloat16_rounding(kind):
    """``batched_bf16``: passes over several tokens use bfloat16 copies of the projections (q|k|v and gate|up
    stacked, Qwen2's biases included); a single token (a decode step) still uses fp32."""
    from agent.generation.fastdecode import FastDecoder

    model = tiny_llama(seed=2, kind=kind)
    fp32, bf16 = FastDecoder(model, {}), FastDecoder(model, {}, batched_bf16=True)
    assert fp32.batched is None and bf16.batched[(0, "qkv")][0].dtype == torch.bfloat16
    assert (bf16.batched[(0, "qkv")][1] is not None) == (kind == "qwen2")
    assert "passes over many tokens in bf16" in bf16.describe()
    ids = torch.randint(0, 320, (40,))
    caches = [[(torch.zeros(2, 40, 16), torch.zeros(2, 40, 16)) for _ in range(2)] for _ in range(2)]
    with torch.inference_mode():
        h32, h16 = fp32._forward(ids, 0, caches[0]), bf16._forward(ids, 0, caches[1])
        l32, l16 = fp32._logits(h32), bf16._logits(h16)
        ref = model(input_ids=ids[None]).logits[0, -1]
        one = torch.randn(1, 64)  # one row (a decode step): the fp32 weights, whatever the setting
        assert torch.equal(bf16._linear(0, "o", bf16.layers[0], one)[0], fp32._linear(0, "o", fp32.layers[0], one)[0])
    assert (l32 - ref).abs().max().item() < 1e-3
    gap = (l32 - l16).abs().max().item()
    assert 1e-4 < gap < 0.1 * ref.abs().max().item()  # bfloat16 really ran, and stayed close
    for (k32, _), (k16, _) in zip(caches[0], caches[1]):
        assert torch.allclose(k32, k16, atol=0.05 * k32.abs().max().item())


def test_the_prefill_precision_setting(monkeypatch):
    from agent.settings import SettingsError, load_settings
    from retrieval.cpu import bf16_is_fast, use_bf16

    assert load_settings().prefill_precision == "auto"
    assert use_bf16("bf16") and not use_bf16("fp32") and use_bf16("auto") == bf16_is_fast()
    monkeypatch.setenv("MOMENTS_PREFILL_PRECISION", "fp16")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "MOMENTS_PREFILL_PRECISION='fp16' is not valid: it must be one of auto, bf16, fp32" in str(info.value)


@pytest.mark.slow
def test_default_generator_fast_and_hf_decode_the_same_reply(generator, agent):
    from agent.generation.decoding import stream_tokens
    from agent.generation.prompt import build_prompt

    assert generator.decoder is not None, "the default generator should decode with the fast decoder"
    assert "120/120 layer groups packed, head packed" in generator.decoder.describe()
    for question in ("How long do I have to return an item?", "Can I change my delivery address?"):
        hits = agent.index.search(question, 4)
        layout = build_prompt(generator.tokenizer, question, [h.passage for h in hits],
                              version=agent.prompt_version)
        fast = [s.token_id for s in stream_tokens(generator.model, generator.tokenizer, layout.input_ids, 48)]
        ref = [s.token_id for s in stream_tokens(generator.model, generator.tokenizer, layout.input_ids, 48,
                                                 backend="hf")]
        assert fast == ref and len(fast) > 5


@pytest.mark.slow
def test_faithfulness_rescoring_argmax_is_the_generated_token(agent):
    """The faithfulness check of issue 15: the fp32 full-context re-scoring (what the explanation is computed
    from) has the generated token as its argmax on >= 99% of positions (bench/speed.py reports it on more turns)."""
    from agent.attribution.rescoring import score_subsets
    from agent.pipeline import Agent

    # the generated replies (the shipped default quotes its reply: see tests/test_quoting.py)
    agent = Agent(agent.settings.model_copy(update={"answer_mode": "generate"}), generator=agent.generator,
                  index=agent.index)
    agree = total = 0
    for question in ("can I send back a blender I already opened and tried out?",
                     "I'm a Gold member, how long do I have to return stuff?",
                     "how do I reset my password?"):
        result = agent.ask(question)
        if not result.token_ids:
            continue
        full = (1 << result.layout.n_passages) - 1
        table = score_subsets(agent.generator.model, result.layout, result.token_ids, [full], top_n=1)
        agree += int((table.top_ids[:, 0] == result.token_ids).sum())
        total += len(result.token_ids)
    assert total >= 30
    assert agree / total >= 0.99, f"re-scoring argmax agrees on {agree}/{total} tokens"


def test_without_a_compiler_there_are_no_kernels_and_decoding_stays_fp32(tmp_path, monkeypatch, caplog):
    from agent.generation import kernels

    monkeypatch.setattr(kernels.shutil, "which", lambda name: None)
    assert kernels.load_kernels(tmp_path / "no-cc") is None
    assert "install gcc" in caplog.text


def test_the_decoder_setting_names_its_values(monkeypatch):
    from agent.settings import SettingsError, load_settings

    assert load_settings().decoder == "fast"
    monkeypatch.setenv("MOMENTS_DECODER", "turbo")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).startswith("MOMENTS_DECODER='turbo' is not valid: it must be one of fast, hf")


def test_an_adapter_on_the_head_keeps_the_head_in_fp32(lib):
    from peft import LoraConfig, get_peft_model

    from agent.generation.decoding import FAST_DECODER_ATTR, greedy_ids
    from agent.generation.fastdecode import FastDecoder, pack_model

    model = get_peft_model(tiny_llama(seed=1), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "lm_head"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2)
    packed = pack_model(lib, model)
    assert "head" not in packed and (1, "qkv") in packed  # q/k/v packed with their LoRA side path
    merged = model.merge_and_unload().eval()
    setattr(merged, FAST_DECODER_ATTR, FastDecoder(merged, packed))
    prompt = torch.randint(0, 320, (30,)).tolist()
    assert list(greedy_ids(merged, prompt, 16, backend="fast")) == list(greedy_ids(merged, prompt, 16, backend="hf"))
