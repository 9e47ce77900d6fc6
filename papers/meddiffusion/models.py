"""MedDiffusion (Sec. 3) and the baselines, all as: visit encoder -> sequence model -> shared classifier head.

Every sequence model maps visit embeddings (B, T, d) and lengths (B,) to a patient vector and the sequence that
the augmenter works on (E_bar for MedDiffusion, E for baselines). With augmentation on, the augmenter (diffusion,
or the medGAN-style GAN baseline) turns that sequence into a synthetic one that goes through the SAME sequence
model and classifier (Sec. 3.4).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from papers.meddiffusion.diffusion import DiffusionAugmenter
from papers.meddiffusion.gan import MedGANAugmenter
from papers.meddiffusion.masks import last_valid, valid_mask

MODELS = ("meddiffusion", "lstm", "gru", "transformer", "retain", "dipole")
ATTENTION = ("stepwise", "fixed", "none")
ATTENTION_INPUT = ("per_visit", "first_visit")
STRUCTURES = ("official", "attended")
AUGMENTERS = ("diffusion", "gan")


class VisitEncoder(nn.Module):
    """e_t = sum over the visit's codes of ReLU(dropout(embedding)) + a time encoding (Sec. 3.2, official code):
    1 - tanh((W_t (dt / 180))^2) -> Linear(64 -> d), dt = days before the last visit."""

    def __init__(self, vocab_size: int, embed_dim: int, time_dim: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size + 1, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.time_layer = nn.Linear(1, time_dim)
        self.time_up = nn.Linear(time_dim, embed_dim)

    def forward(self, codes: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
        emb = torch.relu(self.dropout(self.embedding(codes))) * (codes > 0).unsqueeze(-1)
        time_feature = 1 - torch.tanh(self.time_layer(days.unsqueeze(-1) / 180.0) ** 2)
        return emb.sum(dim=2) + self.time_up(time_feature)


class StepAttention(nn.Module):
    """Step-wise attention (Sec. 3.2): e_bar_k = a1 e_k + a2 W_hk h_{k-1},
    [a1, a2] = softmax(W2 tanh(W1 [e_k ; W_hk h_{k-1}])). ``'fixed'`` uses a1 = a2 = 0.5 (an ablation)."""

    def __init__(self, embed_dim: int, hidden_dim: int, attention: str = "stepwise", attn_dim: int = 64) -> None:
        super().__init__()
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
        self.attention = attention
        self.w_hk = nn.Linear(hidden_dim, embed_dim, bias=False)
        self.w1 = nn.Linear(2 * embed_dim, attn_dim)
        self.w2 = nn.Linear(attn_dim, 2)

    def forward(self, e_k: torch.Tensor, h_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """e_bar_k and [a1, a2] for (..., d) e_k and (..., H) h_{k-1}."""
        projected = self.w_hk(h_prev)
        if self.attention == "fixed":
            weights = torch.full((*e_k.shape[:-1], 2), 0.5, dtype=e_k.dtype, device=e_k.device)
        else:
            weights = torch.softmax(self.w2(torch.tanh(self.w1(torch.cat([e_k, projected], dim=-1)))), dim=-1)
        return weights[..., :1] * e_k + weights[..., 1:] * projected, weights


def _check_attention(attention: str, attention_input: str) -> None:
    if attention not in ATTENTION or attention_input not in ATTENTION_INPUT:
        raise ValueError(f"attention must be one of {ATTENTION} and attention_input one of {ATTENTION_INPUT}")


class OfficialMedDiffusion(nn.Module):
    """MedDiffusion as the official code wires it (``models/ab_LSTM_ddim.py``): the prediction comes from a plain
    LSTM over the visit embeddings E; step-wise attention mixes e_k with W_hk h_{k-1} of that LSTM into E_bar,
    which only feeds the augmenter; the synthetic E_hat goes through the same plain LSTM.

    ``attention='none'`` gives E_bar = E, ``'fixed'`` a1 = a2 = 0.5 (the ablations); ``attention_input=
    'first_visit'`` mixes e_0 in place of e_k for k >= 1, as the official code does.
    """

    def __init__(self, embed_dim: int, hidden_dim: int, attention: str = "stepwise",
                 attention_input: str = "per_visit", attn_dim: int = 64) -> None:
        super().__init__()
        _check_attention(attention, attention_input)
        self.attention, self.attention_input = attention, attention_input
        self.rnn = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.mixer = StepAttention(embed_dim, hidden_dim, attention, attn_dim) if attention != "none" else None
        self.out_dim = hidden_dim
        self.last_weights: torch.Tensor | None = None  # (B, T - 1, 2) attention weights of the last forward pass

    def forward(self, e: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.rnn(e)[0]
        if self.mixer is None or e.shape[1] == 1:
            return last_valid(hidden, lengths), e
        source = e[:, :1].expand_as(e) if self.attention_input == "first_visit" else e
        mixed, weights = self.mixer(source[:, 1:], hidden[:, :-1])  # e_bar_k from e_k and h_{k-1}, k >= 1
        self.last_weights = weights.detach()
        return last_valid(hidden, lengths), torch.cat([e[:, :1], mixed], dim=1)  # e_bar_0 = e_0

    def synthetic(self, e_hat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return last_valid(self.rnn(e_hat)[0], lengths)


class StepwiseAttentionLSTM(nn.Module):
    """The ``structure: attended`` variant (not the official wiring): the attended sequence E_bar is what the
    predicting LSTM cell reads, step by step, with e_bar_k mixing e_k and W_hk h_{k-1} of this same cell.
    ``attention_input='first_visit'`` feeds e_0 in place of e_k at every step.
    """

    def __init__(self, embed_dim: int, hidden_dim: int, attention: str = "stepwise",
                 attention_input: str = "per_visit", attn_dim: int = 64) -> None:
        super().__init__()
        _check_attention(attention, attention_input)
        self.attention, self.attention_input = attention, attention_input
        self.cell = nn.LSTMCell(embed_dim, hidden_dim)
        self.mixer = StepAttention(embed_dim, hidden_dim, "fixed" if attention == "fixed" else "stepwise", attn_dim)
        self.out_dim = hidden_dim
        self.last_weights: torch.Tensor | None = None  # (B, T - 1, 2) attention weights of the last forward pass

    def run(self, e: torch.Tensor, attend: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (B, T, H) and the sequence actually fed to the cell (B, T, d)."""
        batch, steps, _ = e.shape
        h = e.new_zeros(batch, self.cell.hidden_size)
        c = e.new_zeros(batch, self.cell.hidden_size)
        hidden, fed, weights = [], [], []
        for k in range(steps):
            e_k = e[:, 0] if (self.attention_input == "first_visit" and k > 0) else e[:, k]
            if attend and self.attention != "none" and k > 0:
                e_k, w = self.mixer(e_k, h)
                weights.append(w)
            h, c = self.cell(e_k, (h, c))
            hidden.append(h)
            fed.append(e_k)
        if weights:
            self.last_weights = torch.stack(weights, dim=1).detach()
        return torch.stack(hidden, dim=1), torch.stack(fed, dim=1)

    def forward(self, e: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, e_bar = self.run(e, attend=True)
        return last_valid(hidden, lengths), e_bar

    def synthetic(self, e_hat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The synthetic E_hat already is an attended sequence: it goes through the same LSTM cell directly."""
        return last_valid(self.run(e_hat, attend=False)[0], lengths)


class RecurrentBaseline(nn.Module):
    """LSTM or GRU over the visits; the patient vector is the last real visit's hidden state."""

    def __init__(self, kind: str, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(embed_dim, hidden_dim, batch_first=True)
        self.out_dim = hidden_dim

    def forward(self, e: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return last_valid(self.rnn(e)[0], lengths), e

    def synthetic(self, e_hat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.forward(e_hat, lengths)[0]


class TransformerBaseline(nn.Module):
    """Transformer encoder over visits (learned positions, padding masked), mean-pooled over real visits."""

    def __init__(self, embed_dim: int, max_visits: int, layers: int = 2, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, max_visits, embed_dim))
        layer = nn.TransformerEncoderLayer(embed_dim, heads, 2 * embed_dim, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = embed_dim

    def forward(self, e: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = valid_mask(lengths, e.shape[1])
        h = self.encoder(e + self.position[:, : e.shape[1]], src_key_padding_mask=~mask)
        pooled = (h * mask.unsqueeze(-1)).sum(1) / lengths[:, None].to(h.dtype)
        return pooled, e

    def synthetic(self, e_hat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.forward(e_hat, lengths)[0]


def packed_rnn(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=x.shape[1])[0]


def reverse_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's real visits in time, leaving the padding at the end."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    idx = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


class Retain(nn.Module):
    """RETAIN (Choi et al. 2016): reverse-time GRUs give visit weights alpha (softmax) and feature weights beta
    (tanh); the patient vector is sum_t alpha_t * beta_t * e_t."""

    def __init__(self, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.gru_alpha = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.gru_beta = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.w_alpha = nn.Linear(hidden_dim, 1)
        self.w_beta = nn.Linear(hidden_dim, embed_dim)
        self.out_dim = embed_dim

    def forward(self, e: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reversed_e = reverse_valid(e, lengths)
        g = reverse_valid(packed_rnn(self.gru_alpha, reversed_e, lengths), lengths)
        h = reverse_valid(packed_rnn(self.gru_beta, reversed_e, lengths), lengths)
        scores = self.w_alpha(g).squeeze(-1).masked_fill(~valid_mask(lengths, e.shape[1]), float("-inf"))
        alpha = torch.softmax(scores, dim=1)
        beta = torch.tanh(self.w_beta(h))
        return (alpha.unsqueeze(-1) * beta * e).sum(1), e

    def synthetic(self, e_hat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.forward(e_hat, lengths)[0]


class Dipole(nn.Module):
    """Dipole (Ma et al. 2017), location-based attention: a bidirectional GRU, softmax(w^T h_i) over the visits
    before the last, and tanh(W [context ; h_last]) as the patient vector."""

    def __init__(self, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.score = nn.Linear(2 * hidden_dim, 1)
        self.combine = nn.Linear(4 * hidden_dim, hidden_dim)
        self.out_dim = hidden_dim

    def forward(self, e: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = packed_rnn(self.gru, e, lengths)
        last = last_valid(h, lengths)
        before = valid_mask(lengths - 1, e.shape[1])
        before[:, 0] |= lengths == 1  # a one-visit patient attends to that visit
        alpha = torch.softmax(self.score(h).squeeze(-1).masked_fill(~before, float("-inf")), dim=1)
        context = (alpha.unsqueeze(-1) * h).sum(1)
        return torch.tanh(self.combine(torch.cat([context, last], dim=-1))), e

    def synthetic(self, e_hat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.forward(e_hat, lengths)[0]


class Classifier(nn.Module):
    """The official head: Linear(h, 4h) - ReLU - Linear(4h, 2h) - ReLU - Dropout - Linear(2h, 2)."""

    def __init__(self, in_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, 4 * in_dim), nn.ReLU(), nn.Linear(4 * in_dim, 2 * in_dim), nn.ReLU(),
                                 nn.Dropout(dropout), nn.Linear(2 * in_dim, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RiskModel(nn.Module):
    """Visit encoder + sequence model + classifier, with optional diffusion augmentation used in training only."""

    def __init__(self, vocab_size: int, model: str, embed_dim: int, hidden_dim: int, max_visits: int,
                 dropout: float = 0.1, augment: bool = True, attention: str = "stepwise",
                 attention_input: str = "per_visit", denoiser_channels: int = 64, diffusion_steps: int = 1000,
                 beta_start: float = 1e-4, beta_end: float = 0.02, time_dim: int = 64, structure: str = "official",
                 augmenter: str = "diffusion") -> None:
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
        if structure not in STRUCTURES or augmenter not in AUGMENTERS:
            raise ValueError(f"structure must be one of {STRUCTURES} and augmenter one of {AUGMENTERS}")
        self.max_visits, self.embed_dim = max_visits, embed_dim
        self.encoder = VisitEncoder(vocab_size, embed_dim, time_dim, dropout)
        if model == "meddiffusion":
            kind = OfficialMedDiffusion if structure == "official" else StepwiseAttentionLSTM
            self.sequence: nn.Module = kind(embed_dim, hidden_dim, attention, attention_input)
        elif model in ("lstm", "gru"):
            self.sequence = RecurrentBaseline(model, embed_dim, hidden_dim)
        elif model == "transformer":
            self.sequence = TransformerBaseline(embed_dim, max_visits, dropout=dropout)
        elif model == "retain":
            self.sequence = Retain(embed_dim, hidden_dim)
        else:
            self.sequence = Dipole(embed_dim, hidden_dim)
        self.classifier = Classifier(self.sequence.out_dim, dropout)
        self.augmenter: nn.Module | None = None
        if augment and augmenter == "diffusion":
            self.augmenter = DiffusionAugmenter(embed_dim, denoiser_channels, diffusion_steps, beta_start, beta_end)
        elif augment:
            self.augmenter = MedGANAugmenter(embed_dim, max_visits, dropout)

    def draw_augmentation(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The augmenter's random draws for ``n`` patients (empty without an augmenter), on the CPU."""
        if self.augmenter is None:
            return {}
        return self.augmenter.draw((n, self.max_visits, self.embed_dim), generator)

    def forward(self, codes: torch.Tensor, days: torch.Tensor, lengths: torch.Tensor,
                synthesize: bool = False, draws: dict[str, torch.Tensor] | None = None,
                mean_visits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits of the real sequence; with ``synthesize`` also those of the synthetic one and the augmenter's
        own loss terms (``mse_noise`` for diffusion, ``gan_*`` for the GAN), using ``draws`` (from
        :meth:`draw_augmentation`) as its randomness when given; ``mean_visits`` see ``masks.masked_mse``."""
        patient, e_bar = self.sequence(self.encoder(codes, days), lengths)
        out = {"logits": self.classifier(patient)}
        if synthesize and self.augmenter is not None:
            e_hat, aux = self.augmenter(e_bar, lengths, draws or None, mean_visits)
            out.update(logits_synthetic=self.classifier(self.sequence.synthetic(e_hat, lengths)), **aux)
        return out


def meddiffusion_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, lambda_s: float,
                      lambda_d: float) -> dict[str, torch.Tensor]:
    """L = CE(real) + lambda_S CE(synthetic, real label) + lambda_D MSE(eps_hat, eps) (Sec. 3.4, Eq. of the total
    loss); for the GAN baseline the last term is its reconstruction + generator + discriminator losses (weight 1)."""
    ce_real = nn.functional.cross_entropy(out["logits"], labels)
    parts = {"ce_real": ce_real, "loss": ce_real}
    if "logits_synthetic" in out:
        ce_syn = nn.functional.cross_entropy(out["logits_synthetic"], labels)
        aux = {k: v for k, v in out.items() if k == "mse_noise" or k.startswith("gan_")}
        extra = sum(lambda_d * v if k == "mse_noise" else v for k, v in aux.items())
        parts.update(ce_synthetic=ce_syn, **aux, loss=ce_real + lambda_s * ce_syn + extra)
    return parts
