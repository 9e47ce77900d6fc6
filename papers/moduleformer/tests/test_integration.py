"""Linear-cost experts, the official checkpoint layout, reloadable surgery, transformers integration, new losses."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from transformers import AutoModelForCausalLM

from papers.moduleformer.modeling import (
    LoadingError,
    ModuleFormerForCausalLM,
    ParallelExperts,
    TopKGating,
    load_concentration_loss,
    stick_breaking_attention,
)
from papers.moduleformer.surgery import add_experts, expert_usage, moe_layers, prune_experts
from papers.moduleformer.tests.test_modeling import tiny_config


class ElementCounter(TorchDispatchMode):
    """Sums the elements of every tensor the ops under it produce (a deterministic cost measure)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.elements += sum(t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        return out


def indexed_experts(x: torch.Tensor, weight: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """The previous implementation (weight[e] per expert): same values, O(E^2) backward."""
    return torch.cat([chunk @ weight[e] for e, chunk in enumerate(x.split(sizes))])


def backward_elements(n_experts: int, fn: str) -> tuple[int, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    experts = ParallelExperts(n_experts, 16, 16)
    x = torch.randn(4096, 16, requires_grad=True)
    sizes = [4096 // n_experts] * n_experts
    y = experts(x, sizes) if fn == "unbind" else indexed_experts(x, experts.weight, sizes)
    with ElementCounter() as counter:
        y.backward(torch.randn_like(y))
    return counter.elements, experts.weight.grad, x.grad


def test_expert_backward_cost_does_not_grow_with_experts_and_gradients_are_unchanged() -> None:
    small, grad_w8, grad_x8 = backward_elements(8, "unbind")
    large, grad_w64, grad_x64 = backward_elements(64, "unbind")
    assert large / small < 1.5  # fixed tokens: only the (linear, small here) weight gradient grows
    old_small, ref_w8, ref_x8 = backward_elements(8, "indexed")
    old_large, ref_w64, ref_x64 = backward_elements(64, "indexed")
    assert old_large / old_small > 4  # the measure does catch the old quadratic backward
    for got, ref in ((grad_w8, ref_w8), (grad_x8, ref_x8), (grad_w64, ref_w64), (grad_x64, ref_x64)):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    sizes = [0, 7, 0, 5]  # experts that receive no token get a zero gradient
    experts = ParallelExperts(4, 3, 2)
    experts(torch.randn(12, 3), sizes).sum().backward()
    assert experts.weight.grad[0].abs().sum() == 0 and experts.weight.grad[1].abs().sum() > 0


def official_checkpoint(tmp_path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A checkpoint written in the official layout (config.json keys and weight names of IBM/ModuleFormer)."""
    cfg = {"model_type": "moduleformer", "vocab_size": 23, "block_size": 16, "history_length": 16, "n_embd": 8, "n_layer": 2,
           "n_head": 2, "att_hidden": 8, "ffd_hidden": 6, "activation_function": "gelu_new", "resid_pdrop": 0.0,
           "embd_pdrop": 0.0, "attn_pdrop": 0.0, "moe_pdrop": 0.0, "sample_topk": 0, "gating_size": 5, "n_att_experts": 3,
           "k_att": 2, "n_mlp_experts": 4, "k_mlp": 2, "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "use_cache": True,
           "bos_token_id": 0, "eos_token_id": 0, "tie_word_embeddings": False, "aux_loss_type": "mi", "aux_loss_weight": 0,
           "gate_type": "mlp", "architectures": ["ModuleFormerForCausalLM"]}
    g = torch.Generator().manual_seed(3)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.5  # noqa: E731
    sd = {"transformer.wte.weight": r(23, 8), "transformer.ln_f.weight": 1 + r(8), "transformer.ln_f.bias": r(8), "lm_head.weight": r(23, 8)}
    for i in range(2):
        p = f"transformer.h.{i}."
        sd.update({p + "ln_1.weight": 1 + r(8), p + "ln_1.bias": r(8), p + "ln_2.weight": 1 + r(8), p + "ln_2.bias": r(8),
                   p + "attn.k_proj.weight": r(8, 8), p + "attn.k_proj.bias": r(8), p + "attn.v_proj.weight": r(8, 8), p + "attn.v_proj.bias": r(8),
                   p + "attn.mask": torch.tril(torch.ones(32, 32, dtype=torch.int8)), p + "attn.cum_weight": torch.tril(torch.ones(32, 32), -1)})
        for moe, n, hidden in (("attn.q_proj", 3, 8), ("mlpf", 4, 6)):
            sd.update({f"{p}{moe}.experts.weight": r(n, 8, hidden), f"{p}{moe}.output_experts.weight": r(n, hidden, 8),
                       f"{p}{moe}.gate.w_gate.0.weight": r(5, 8), f"{p}{moe}.gate.w_gate.0.bias": r(5), f"{p}{moe}.gate.w_gate.3.weight": r(n, 5)})
    return sd, cfg


def write_checkpoint(path: Path, sd: dict[str, torch.Tensor], cfg: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def reference_logits(sd: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """The official forward written out per token from the raw tensors (no code shared with modeling.py but the
    stick-breaking kernel, which test_modeling checks against a triple loop)."""
    ln = lambda x, p: F.layer_norm(x, (8,), sd[p + ".weight"], sd[p + ".bias"])  # noqa: E731

    def gate(x: torch.Tensor, p: str, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        logits = F.gelu(x @ sd[p + ".gate.w_gate.0.weight"].T + sd[p + ".gate.w_gate.0.bias"]) @ sd[p + ".gate.w_gate.3.weight"].T
        probs = logits.softmax(-1)
        return [probs[t].topk(k) for t in range(len(x))]

    x = sd["transformer.wte.weight"][ids[0]]
    for i in range(2):
        p = f"transformer.h.{i}."
        h = ln(x, p + "ln_1")
        keys = (h @ sd[p + "attn.k_proj.weight"].T + sd[p + "attn.k_proj.bias"]).view(-1, 2, 4)
        values = (h @ sd[p + "attn.v_proj.weight"].T + sd[p + "attn.v_proj.bias"]).view(-1, 2, 4)
        out = torch.zeros_like(x)
        for t, (gates, experts) in enumerate(gate(h, p + "attn.q_proj", 2)):
            for g, e in zip(gates, experts, strict=True):
                q = (h[t] @ sd[p + "attn.q_proj.experts.weight"][e]).view(2, 4)
                heads = [stick_breaking_attention(q[j][None], keys[: t + 1, j], values[: t + 1, j])[0] for j in range(2)]
                out[t] += g * (torch.cat(heads) @ sd[p + "attn.q_proj.output_experts.weight"][e])
        x = x + out
        h = ln(x, p + "ln_2")
        out = torch.zeros_like(x)
        for t, (gates, experts) in enumerate(gate(h, p + "mlpf", 2)):
            for g, e in zip(gates, experts, strict=True):
                hidden = F.gelu(h[t] @ sd[p + "mlpf.experts.weight"][e], approximate="tanh")
                out[t] += g * (hidden @ sd[p + "mlpf.output_experts.weight"][e])
        x = x + out
    return (ln(x, "transformer.ln_f") @ sd["lm_head.weight"].T)[None]


def test_official_layout_checkpoint_gives_the_reference_logits(tmp_path: Path) -> None:
    sd, cfg = official_checkpoint(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(write_checkpoint(tmp_path / "ok", sd, cfg)).eval()
    ids = torch.randint(0, 23, (1, 7), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(ids).logits, reference_logits(sd, ids), rtol=1e-4, atol=1e-5)
    missing = {k: v for k, v in sd.items() if "mlpf.gate" not in k}
    with pytest.raises(LoadingError, match="missing"):
        AutoModelForCausalLM.from_pretrained(write_checkpoint(tmp_path / "missing", missing, cfg))
    renamed = {k.replace("q_proj", "q_moe"): v for k, v in sd.items()}  # e.g. the old names of this implementation
    with pytest.raises(LoadingError, match="unexpected"):
        AutoModelForCausalLM.from_pretrained(write_checkpoint(tmp_path / "renamed", renamed, cfg))
    with pytest.raises(ValueError, match="gate_type"):
        AutoModelForCausalLM.from_pretrained(write_checkpoint(tmp_path / "gmm", sd, {**cfg, "gate_type": "gmm"}))


def test_pruned_and_extended_models_reload_with_identical_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ModuleFormerForCausalLM(tiny_config()).eval()
    ids = torch.randint(0, 37, (3, 9))
    usage = {}
    for i, (name, u) in enumerate(expert_usage(model, ids).items()):  # keep 2 or 3 experts, alternating by layer
        usage[name] = torch.zeros_like(u)
        usage[name][: 2 + i % 2] = 1 / (2 + i % 2)
    prune_experts(model, usage, min_share=0.5)
    add_experts(model, 1)
    counts = [m.experts.weight.shape[0] for m in moe_layers(model).values()]
    assert len(set(counts)) > 1  # layers now differ in size
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.mlp_experts_per_layer == model.config.mlp_experts_per_layer
    assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_surgery_keeps_the_dtype() -> None:
    torch.manual_seed(0)
    model = ModuleFormerForCausalLM(tiny_config()).to(torch.bfloat16).eval()
    ids = torch.randint(0, 37, (2, 6))
    prune_experts(model, expert_usage(model, ids), min_share=10.0)
    add_experts(model, 2)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.isfinite(model(ids).logits).all()


def test_extension_trains_only_the_new_parameters() -> None:
    torch.manual_seed(0)
    model = ModuleFormerForCausalLM(tiny_config())
    trainable = add_experts(model, 2)
    ids = torch.randint(0, 37, (2, 6))
    model(ids, labels=ids).loss.backward()
    keep = {id(p) for p in trainable}
    for name, param in model.named_parameters():
        assert param.requires_grad == (id(param) in keep), name
        assert (param.grad is None) == (id(param) not in keep), name
    for param in trainable:  # the old rows of the shared tensors get an exactly zero gradient
        n_old = len(param) - 2
        assert param.grad[:n_old].abs().sum() == 0 and param.grad[n_old:].abs().sum() > 0


def test_gradient_checkpointing_hidden_states_inputs_embeds_and_cache_checks() -> None:
    torch.manual_seed(0)
    model = ModuleFormerForCausalLM(tiny_config())
    ids = torch.randint(0, 37, (2, 6))
    model(ids, labels=ids).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    out = model(ids, labels=ids)
    out.loss.backward()
    assert out.cache is None
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, plain[name], msg=name)
    model.activation_checkpointing_disable()
    model.eval()
    out = model(ids, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.n_layer + 1
    torch.testing.assert_close(model.lm_head(out.hidden_states[-1]), out.logits)
    torch.testing.assert_close(model(inputs_embeds=model.get_input_embeddings()(ids)).logits, out.logits)
    with pytest.raises(ValueError, match="exactly one"):
        model(ids, inputs_embeds=model.get_input_embeddings()(ids))
    cache = model(ids[:, :4]).cache
    with pytest.raises(ValueError, match="use_cache=False"):
        model(ids[:, 4:], cache=cache, use_cache=False)
    step = model(ids[:, 4:], cache=cache)  # a cache passed in is used (and use_cache defaults to it)
    torch.testing.assert_close(step.logits, out.logits[:, 4:], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_saved_model_loads_with_trust_remote_code_without_this_repository(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ModuleFormerForCausalLM(tiny_config()).save_pretrained(tmp_path / "m")
    auto_map = json.loads((tmp_path / "m" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForCausalLM"] == "modeling.ModuleFormerForCausalLM"
    code = (f"from transformers import AutoModelForCausalLM; m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'm')!r}, "
            "trust_remote_code=True); import sys; print(type(m).__module__, 'papers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env={"HF_HOME": str(tmp_path), "PATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "False" and "transformers_modules" in done.stdout


@pytest.mark.slow
def test_torch_compile_matches_eager_with_a_graph_break_at_the_expert_sizes() -> None:
    torch.manual_seed(0)
    model = ModuleFormerForCausalLM(tiny_config()).eval()
    ids = torch.randint(0, 37, (2, 6))
    compiled = torch.compile(model, backend="eager")  # the data-dependent expert sizes (.tolist()) break the graph
    torch.testing.assert_close(compiled(ids, use_cache=False).logits, model(ids, use_cache=False).logits)


def test_load_concentration_loss_by_hand() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    p = [0.4, 0.15, 0.45]
    assert load_concentration_loss(probs).item() == pytest.approx(-sum(x * math.log(x) for x in p), rel=1e-5)
    assert load_concentration_loss(torch.tensor([[0.0, 1.0, 0.0]] * 4)).item() == pytest.approx(0.0, abs=1e-6)
    model = ModuleFormerForCausalLM(tiny_config(aux_loss_type="load_concentration"))
    ids = torch.randint(0, 37, (2, 6))
    assert model(ids).aux_loss.item() > 0  # H(e) >= 0, unlike the (negative) MI loss
    with pytest.raises(ValueError, match="aux_loss_type"):
        tiny_config(aux_loss_type="switch")


def test_sampled_top_k_keeps_the_top_and_samples_the_rest_by_probability() -> None:
    torch.manual_seed(0)
    gate = TopKGating(4, 5, k=2, gating_size=6, dropout=0.0, sample_topk=1)
    probs = torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]).repeat(20_000, 1)
    gate.eval()
    assert torch.equal(gate.select(probs)[1], probs.topk(2).indices)  # deterministic at inference
    gate.train()
    gates, experts = gate.select(probs)
    assert (experts[:, 0] == 0).all() and (experts[:, 1] != 0).all()
    torch.testing.assert_close(gates, probs.gather(1, experts))
    freq = torch.bincount(experts[:, 1], minlength=5).double() / 20_000
    torch.testing.assert_close(freq[1:], torch.tensor([0.3, 0.1, 0.06, 0.04], dtype=torch.float64) / 0.5, atol=0.015, rtol=0)
    with pytest.raises(ValueError, match="sample_topk"):
        tiny_config(sample_topk=3)
