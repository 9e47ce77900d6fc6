"""HiMPP / PACIA in Flax: GIN encoder with a property-level hypernetwork (FiLM-style node modulation), property-aware
embedding, relation-graph predictor with a hypernetwork classifier and a molecule-level controller after every layer;
plus ProtoNet and MAML heads. Defaults follow the official PACIA code (LARS-research/PACIA, ``mod=16``)."""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from papers.himpp.featurize import NUM_ATOM_TYPES, NUM_BOND_DIRS, NUM_BOND_TYPES, NUM_CHIRALITY, GraphBatch

Method = Literal["himpp", "no_property", "no_molecule", "par", "protonet", "maml"]
METHODS: tuple[str, ...] = ("himpp", "no_property", "no_molecule", "par", "protonet", "maml")
CLASSIFIERS: tuple[str, ...] = ("hyper", "prototype")  # PACIA's ADC hypernetwork | scaled dot product with prototypes
GIN_NORMS: tuple[str, ...] = ("layer", "batch")  # LayerNorm | Pre-GNN's BatchNorm with frozen statistics
BATCH_NORM_EPS = 1e-5  # torch.nn.BatchNorm1d's default, as in the Pre-GNN checkpoints


def uses_property_level(method: str) -> bool:
    return method in ("himpp", "no_molecule")


def uses_molecule_level(method: str) -> bool:
    return method in ("himpp", "no_property")


def mean_pool(h: jax.Array, g: GraphBatch) -> jax.Array:
    """Mean of node states per graph; padded nodes sit in the extra segment that is dropped."""
    n_graphs = g.graph_mask.shape[0]
    sums = jax.ops.segment_sum(h, g.node_graph, num_segments=n_graphs + 1)[:n_graphs]
    counts = jax.ops.segment_sum(jnp.ones_like(h[:, :1]), g.node_graph, num_segments=n_graphs + 1)[:n_graphs]
    return sums / jnp.maximum(counts, 1.0)


def class_means(x: jax.Array, labels: jax.Array, n_classes: int = 2) -> jax.Array:
    """(..., C, d) mean of the rows of ``x`` (..., S, d) in each class; order-invariant within a class."""
    onehot = jax.nn.one_hot(labels, n_classes, dtype=x.dtype)
    return jnp.einsum("sc,...sd->...cd", onehot, x) / jnp.maximum(onehot.sum(0)[:, None], 1.0)


def modulate(h: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """Property-level adaptation of node states (Sec. 3.2): h <- h * (1 + w) + b."""
    return h * (1.0 + w) + b


def l2_normalise(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def controller_loss(layer_logits: jax.Array, layer_scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Molecule-level objective (Sec. 3.3): mean over queries of sum_l softmax(p)_l * CE(logits_l, y)."""
    log_probs = jax.nn.log_softmax(layer_logits, axis=-1)  # (Q, L, 2)
    ce = -jnp.take_along_axis(log_probs, labels[:, None, None], axis=-1)[..., 0]  # (Q, L)
    return jnp.mean(jnp.sum(jax.nn.softmax(layer_scores, axis=-1) * ce, axis=-1))


def select_layer_logits(layer_logits: jax.Array, layer_scores: jax.Array) -> jax.Array:
    """Test-time depth choice (Sec. 3.3): the logits of argmax_l p_l for every query."""
    best = jnp.argmax(layer_scores, axis=-1)
    return jnp.take_along_axis(layer_logits, best[:, None, None], axis=1)[:, 0]


class ResidualMLP(nn.Module):
    """Dense to ``hidden`` then ``depth`` residual ReLU blocks."""

    hidden: int
    depth: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Dense(self.hidden)(x)
        for _ in range(self.depth):
            x = x + nn.Dense(self.hidden)(nn.relu(nn.Dense(self.hidden)(nn.relu(x))))
        return x


class SetEncoder(nn.Module):
    """Labelled-set encoder: per-sample [x ; onehot(y)] -> 3 residual layers -> class means -> concat -> 3 layers.
    ``x`` (..., S, d) -> (..., out): leading axes are independent sets with the same labels."""

    hidden: int
    out: int

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array) -> jax.Array:
        onehot = jnp.broadcast_to(jax.nn.one_hot(labels, 2, dtype=x.dtype), (*x.shape[:-1], 2))
        z = ResidualMLP(self.hidden)(jnp.concatenate([x, onehot], axis=-1))
        z = class_means(z, labels)
        z = z.reshape(*z.shape[:-2], -1)
        return nn.Dense(self.out)(nn.relu(ResidualMLP(self.hidden)(z)))


class PropertyHypernet(nn.Module):
    """Property-level hypernetwork of one GIN layer: support graph vectors + labels -> (w_l, b_l), L2-normalised."""

    dim: int
    hidden: int

    @nn.compact
    def __call__(self, pooled: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = SetEncoder(self.hidden, 2 * self.dim)(pooled, labels)
        return l2_normalise(out[: self.dim]), l2_normalise(out[self.dim:])


class GINConv(nn.Module):
    """GIN layer with bond embeddings (Hu et al. 2020): MLP(sum_{u in N(v) + v} (h_u + e_uv))."""

    dim: int

    @nn.compact
    def __call__(self, h: jax.Array, g: GraphBatch) -> jax.Array:
        edge = nn.Embed(NUM_BOND_TYPES, self.dim)(g.bond_type) + nn.Embed(NUM_BOND_DIRS, self.dim)(g.bond_dir)
        agg = jax.ops.segment_sum(h[g.src] + edge, g.dst, num_segments=h.shape[0])
        return nn.Dense(self.dim)(nn.relu(nn.Dense(2 * self.dim)(agg)))


class FrozenBatchNorm(nn.Module):
    """Pre-GNN's BatchNorm1d in inference form: (h - mean) / sqrt(var + eps) * scale + bias. ``mean`` / ``var`` come
    from a converted checkpoint (identity at init) and get no gradient; ``frozen_`` leaves are also kept out of weight
    decay (training.weight_decay_mask)."""

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        dim = h.shape[-1]
        mean = jax.lax.stop_gradient(self.param("frozen_mean", nn.initializers.zeros, (dim,)))
        var = jax.lax.stop_gradient(self.param("frozen_var", nn.initializers.ones, (dim,)))
        scale = self.param("scale", nn.initializers.ones, (dim,))
        bias = self.param("bias", nn.initializers.zeros, (dim,))
        return (h - mean) * jax.lax.rsqrt(var + BATCH_NORM_EPS) * scale + bias


class GINEncoder(nn.Module):
    """GIN over a padded flat graph batch, optionally modulated after each layer by the property hypernetwork."""

    dim: int
    layers: int
    dropout: float
    hyper_hidden: int
    modulated: bool
    norm: str = "layer"  # GIN_NORMS

    def setup(self) -> None:
        self.atom_embed = nn.Embed(NUM_ATOM_TYPES, self.dim)
        self.chirality_embed = nn.Embed(NUM_CHIRALITY, self.dim)
        self.convs = [GINConv(self.dim) for _ in range(self.layers)]
        self.norms = [nn.LayerNorm() if self.norm == "layer" else FrozenBatchNorm() for _ in range(self.layers)]
        self.hypernets = [PropertyHypernet(self.dim, self.hyper_hidden) for _ in range(self.layers)] \
            if self.modulated else []
        self.drop = nn.Dropout(self.dropout)

    def __call__(self, g: GraphBatch, labels: jax.Array | None = None, films: list | None = None,
                 train: bool = False, return_nodes: bool = False) -> tuple[jax.Array, list]:
        """Graph embeddings (G, dim) (node states (N, dim) if ``return_nodes``) and the per-layer (w, b);
        the support pass (films=None) computes them."""
        h = self.atom_embed(g.atom) + self.chirality_embed(g.chirality)
        computed = []
        for layer in range(self.layers):
            h = self.norms[layer](self.convs[layer](h, g))
            if layer < self.layers - 1:
                h = nn.relu(h)
            h = self.drop(h, deterministic=not train)
            if self.modulated:
                if films is None:
                    w, b = self.hypernets[layer](mean_pool(h, g), labels)
                else:
                    w, b = films[layer]
                computed.append((w, b))
                h = modulate(h, w, b)
        return (h if return_nodes else mean_pool(h, g)), computed


class RelationLayer(nn.Module):
    """One relation-graph step over [support ; query] per query (PAR / PACIA's EdgeUpdate + NodeUpdate networks):
    edges MLP(exp(-|x_i - x_j|)) -> sigmoid with self-edges masked, top-k per row (k = rel_k), L1-normalised;
    node update LeakyReLU(W [x ; A x]). ``residual_norm`` adds LayerNorm(x + update) (this repository's earlier
    variant; PACIA has none). Returns the new node states and the adjacency (Q, n, n)."""

    dim: int
    top_k: int
    residual_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:  # (Q, n, d)
        n = x.shape[1]
        off_diagonal = 1.0 - jnp.eye(n, dtype=x.dtype)
        closeness = jnp.exp(-jnp.abs(x[:, :, None, :] - x[:, None, :, :]))
        e = nn.leaky_relu(nn.Dense(self.dim)(nn.leaky_relu(nn.Dense(2 * self.dim)(closeness))))
        a = nn.sigmoid(nn.Dense(1)(e))[..., 0] * off_diagonal  # self-edges masked before top-k
        _, idx = jax.lax.top_k(a, min(self.top_k, n - 1))
        a = a * jnp.sum(jax.nn.one_hot(idx, n, dtype=x.dtype), axis=-2) * off_diagonal  # and in the node update
        a = a / jnp.maximum(jnp.sum(a, axis=-1, keepdims=True), 1e-12)
        update = nn.leaky_relu(nn.Dense(self.dim)(jnp.concatenate([x, a @ x], axis=-1)))
        return (nn.LayerNorm()(x + update) if self.residual_norm else update), a


class HyperClassifier(nn.Module):
    """PACIA's adaptive classifier (ADC): an MLP hypernetwork maps each class prototype of the support nodes to that
    class's (w_c, b_c); logit_c = w_c . x_q + b_c. ``kind="prototype"``: w_c = prototype / sqrt(d), b_c = 0."""

    dim: int
    kind: str = "hyper"  # CLASSIFIERS

    @nn.compact
    def __call__(self, xs: jax.Array, ys: jax.Array, xq: jax.Array) -> jax.Array:  # (Q, S, d), (S,), (Q, d)
        prototypes = class_means(xs, ys)  # (Q, 2, d)
        if self.kind == "prototype":
            return jnp.einsum("qd,qcd->qc", xq, prototypes) / jnp.sqrt(self.dim)
        w = nn.Dense(self.dim)(nn.leaky_relu(ResidualMLP(self.dim, depth=1)(prototypes)))
        b = nn.Dense(1)(nn.leaky_relu(ResidualMLP(self.dim, depth=1)(prototypes)))[..., 0]
        return jnp.einsum("qd,qcd->qc", xq, w) + b


class LayerController(nn.Module):
    """PACIA's molecule-level controller (Ctrl), shared by the layers: the score p_l of a query from that layer's
    support set-encoding (support node states + labels) and the query's node state."""

    hidden: int

    @nn.compact
    def __call__(self, xs: jax.Array, ys: jax.Array, xq: jax.Array) -> jax.Array:  # (Q, S, d), (S,), (Q, d)
        code = SetEncoder(self.hidden, self.hidden)(xs, ys)  # (Q, hidden)
        return nn.Dense(1)(nn.leaky_relu(ResidualMLP(self.hidden, depth=1)(jnp.concatenate([code, xq], -1))))[:, 0]


class FewShotModel(nn.Module):
    """All methods share the GIN encoder; ``method`` picks the adaptation and the head."""

    # sizes come from HiMPPConfig (training.make_model), which holds the one set of defaults
    method: str
    hidden: int
    gin_layers: int
    dropout: float
    hyper_hidden: int
    embed_dim: int
    predictor_layers: int
    top_k: int  # rel_k: edges kept per node (PACIA: n_shot_train)
    maml_inner_steps: int
    maml_inner_lr: float
    relation_residual_norm: bool
    classifier: str
    gin_norm: str

    def setup(self) -> None:
        self.encoder = GINEncoder(self.hidden, self.gin_layers, self.dropout, self.hyper_hidden,
                                  uses_property_level(self.method), self.gin_norm)
        if self.method == "maml":
            self.head_w = self.param("head_w", nn.initializers.zeros, (self.hidden, 2))
            self.head_b = self.param("head_b", nn.initializers.zeros, (2,))
        if self.method in ("protonet", "maml"):
            return
        self.context_mlp = ResidualMLP(self.embed_dim, depth=2)
        self.relation_layers = [RelationLayer(self.embed_dim, self.top_k, self.relation_residual_norm)
                                for _ in range(self.predictor_layers)]
        self.classifier_head = HyperClassifier(self.embed_dim, self.classifier)  # shared by the layers, as in PACIA
        if uses_molecule_level(self.method):
            self.controller = LayerController(self.hyper_hidden)

    def encode_support(self, gs: GraphBatch, ys: jax.Array, train: bool = False) -> tuple[jax.Array, list]:
        return self.encoder(gs, ys, None, train)

    def encode_queries(self, gq: GraphBatch, films: list, train: bool = False) -> jax.Array:
        return self.encoder(gq, None, films if films else None, train)[0]

    def predict(self, s: jax.Array, ys: jax.Array, q: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per-layer logits (Q, L, 2) and controller scores (Q, L) for queries ``q`` given support ``s``."""
        if self.method == "protonet":  # Snell et al. 2017: negative squared distance to the class means
            d2 = jnp.sum((q[:, None, :] - class_means(s, ys)[None]) ** 2, axis=-1) / s.shape[-1]
            return -d2[:, None, :], jnp.zeros((q.shape[0], 1))
        if self.method == "maml":
            return self._maml(s, ys, q)
        # property-aware embedding (PAR's context MLP): each molecule with the task context
        context = jnp.mean(s, axis=0, keepdims=True)
        es = self.context_mlp(jnp.concatenate([s, jnp.broadcast_to(context, s.shape)], -1))
        eq = self.context_mlp(jnp.concatenate([q, jnp.broadcast_to(context, q.shape)], -1))
        n_s = es.shape[0]
        x = jnp.concatenate([jnp.broadcast_to(es, (eq.shape[0], *es.shape)), eq[:, None, :]], axis=1)
        logits, scores = [], []
        for layer in self.relation_layers:  # Sec. 3.3: a classifier and a controller score after every layer
            x, _ = layer(x)
            logits.append(self.classifier_head(x[:, :n_s], ys, x[:, n_s]))
            if uses_molecule_level(self.method):
                scores.append(self.controller(x[:, :n_s], ys, x[:, n_s]))
        layer_logits = jnp.stack(logits, axis=1)
        if not scores:
            return layer_logits, jnp.zeros(layer_logits.shape[:2])
        return layer_logits, jnp.stack(scores, axis=1)

    def _maml(self, s: jax.Array, ys: jax.Array, q: jax.Array) -> tuple[jax.Array, jax.Array]:
        """MAML (Finn et al. 2017) with the inner loop on the linear head (jax.grad through the steps)."""

        def support_loss(head: tuple[jax.Array, jax.Array]) -> jax.Array:
            logp = jax.nn.log_softmax(s @ head[0] + head[1])
            return -jnp.mean(jnp.take_along_axis(logp, ys[:, None], axis=-1))

        head = (self.head_w, self.head_b)
        for _ in range(self.maml_inner_steps):
            grads = jax.grad(support_loss)(head)
            head = jax.tree.map(lambda p, gr: p - self.maml_inner_lr * gr, head, grads)
        return (q @ head[0] + head[1])[:, None, :], jnp.zeros((q.shape[0], 1))

    def __call__(self, gs: GraphBatch, ys: jax.Array, gq: GraphBatch, train: bool = False):
        s, films = self.encode_support(gs, ys, train)
        q = self.encode_queries(gq, films, train)
        return self.predict(s, ys, q)
