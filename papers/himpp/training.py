"""Meta-training (Sec. 3.4, Alg. 1) and meta-testing (Sec. 4.1) of every method, jitted and vmapped over episodes."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from papers.himpp.config import HiMPPConfig, relation_k
from papers.himpp.episodes import (
    Episode,
    check_disjoint,
    fits_episode,
    sample_episode,
    sample_test_episode,
    usable,
)
from papers.himpp.featurize import GraphBatch, GraphCache, batch_graphs, batch_size_of, bucket, stack_batches
from papers.himpp.model import FewShotModel, controller_loss, select_layer_logits, uses_molecule_level
from shared.data.molecules import FewShotBenchmark
from shared.metrics import roc_auc
from shared.runs import CheckpointError, Run, load_checkpoint, save_checkpoint

CHECKPOINT = "checkpoint.pkl"


def make_model(cfg: HiMPPConfig, method: str | None = None) -> FewShotModel:
    return FewShotModel(method=method or cfg.method, hidden=cfg.hidden, gin_layers=cfg.gin_layers,
                        dropout=cfg.dropout, hyper_hidden=cfg.hyper_hidden, embed_dim=cfg.embed_dim,
                        predictor_layers=cfg.predictor_layers, top_k=relation_k(cfg),
                        maml_inner_steps=cfg.maml_inner_steps, maml_inner_lr=cfg.maml_inner_lr,
                        relation_residual_norm=cfg.relation_residual_norm, classifier=cfg.classifier,
                        gin_norm=cfg.gin_norm)


def weight_decay_mask(params: Any) -> Any:
    """True for every leaf but the frozen BatchNorm statistics (``frozen_*``), which AdamW must not decay."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not str(getattr(path[-1], "key", "")).startswith("frozen_"), params)


def make_optimizer(lr: float, weight_decay: float) -> optax.GradientTransformation:
    return optax.adamw(lr, weight_decay=weight_decay, mask=weight_decay_mask)  # Sec. 4.1: AdamW


def episode_mesh(n_devices: int, tasks_per_batch: int) -> Mesh:
    """A 1-D mesh over ``n_devices`` local devices (0: all) along which the meta-batch of episodes is split."""
    devices = jax.local_devices()
    n = n_devices or len(devices)
    if n > len(devices):
        raise ValueError(f"devices={n} but only {len(devices)} local devices are visible")
    if tasks_per_batch % n:
        raise ValueError(f"tasks_per_batch={tasks_per_batch} must be divisible by the {n} devices it is sharded over"
                         f" (set devices= to a divisor, or change tasks_per_batch)")
    return Mesh(np.array(devices[:n]), ("episodes",))


def usable_tasks(bench: FewShotBenchmark, ids: Sequence[int], k_shot: int, n_query_per_class: int) -> list[int]:
    """Tasks with enough molecules of each class; raises if none is left."""
    kept = [t for t in ids if usable(bench.tasks[t], k_shot, n_query_per_class)]
    if not kept:
        raise ValueError(f"{bench.name}: no task has {k_shot + n_query_per_class} molecules of each class")
    return kept


def episode_batch(episodes: Sequence[Episode], cache: GraphCache) -> tuple[GraphBatch, jax.Array, GraphBatch,
                                                                           jax.Array]:
    """Stack episodes into fixed-size padded arrays (support graphs, labels, query graphs, labels)."""
    sup = [[cache(s) for s in e.support_smiles] for e in episodes]
    qry = [[cache(s) for s in e.query_smiles] for e in episodes]
    gs = stack_batches([batch_graphs(g, *padding(sup)) for g in sup])
    gq = stack_batches([batch_graphs(g, *padding(qry)) for g in qry])
    ys = np.stack([e.support_labels for e in episodes])
    yq = np.stack([e.query_labels for e in episodes])
    return gs, ys, gq, yq


def padding(groups: Sequence[Sequence[Any]]) -> tuple[int, int]:
    """Node / edge padding shared by stacked batches: 48 atoms and 3 edges per atom per graph (at least 384 atoms,
    so that one large molecule in a small batch, e.g. SIDER's 99th percentile of 313 atoms in a 1-shot support,
    does not change the shapes), rounded up to a power of two, so that almost every batch has the same shapes and
    jit compiles once. Padded slots are masked out (raising this floor left Tox21 1-shot losses and test ROC-AUC
    bit-identical)."""
    nodes, edges = batch_size_of(groups)
    n_graphs = max(len(g) for g in groups)
    return max(nodes, bucket(max(48 * n_graphs, 384) - 1)), max(edges, bucket(max(144 * n_graphs, 1152) - 1))


def episode_loss(model: FewShotModel, params: Any, gs: GraphBatch, ys: jax.Array, gq: GraphBatch, yq: jax.Array,
                 key: jax.Array) -> jax.Array:
    """Loss of one episode: Eq. (9)'s controller-weighted sum over layers for the molecule-level methods,
    cross-entropy of the last predictor layer otherwise (PAR, ProtoNet, MAML)."""
    layer_logits, scores = model.apply({"params": params}, gs, ys, gq, train=True, rngs={"dropout": key})
    if uses_molecule_level(model.method):
        return controller_loss(layer_logits, scores, yq)
    logp = jax.nn.log_softmax(layer_logits[:, -1], axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, yq[:, None], axis=-1))


@functools.cache
def make_train_step(model: FewShotModel, lr: float, weight_decay: float, mesh: Mesh):
    """One meta-update over a batch of episodes (Alg. 1): mean episode loss, AdamW step. The episodes (and their
    dropout keys, split from one key as on one device) are sharded over ``mesh``; each device takes the gradient of
    its episodes' share of the mean and the shares are summed (psum), so the update equals the 1-device one.
    Cached per model and mesh, so that runs of the same model in one process compile once."""
    optimizer = make_optimizer(lr, weight_decay)
    episodes, replicated = PartitionSpec("episodes"), PartitionSpec()

    def local_grads(params, gs, ys, gq, yq, keys, n_total):
        def share(p):
            losses = jax.vmap(lambda a, b, c, d, k: episode_loss(model, p, a, b, c, d, k))(gs, ys, gq, yq, keys)
            return jnp.sum(losses) / n_total
        loss, grads = jax.value_and_grad(share)(params)
        return jax.lax.psum(loss, "episodes"), jax.lax.psum(grads, "episodes")

    @jax.jit
    def step(params, opt_state, gs, ys, gq, yq, key):
        keys = jax.random.split(key, ys.shape[0])
        sharded = jax.shard_map(functools.partial(local_grads, n_total=ys.shape[0]), mesh=mesh,
                                in_specs=(replicated, episodes, episodes, episodes, episodes, episodes),
                                out_specs=(replicated, replicated), check_vma=False)
        loss, grads = sharded(params, gs, ys, gq, yq, keys)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def init_params(model: FewShotModel, cfg: HiMPPConfig, bench: FewShotBenchmark, cache: GraphCache) -> Any:
    """Parameters from an example episode of the first training task, seeded by ``cfg.seed``."""
    task = bench.tasks[train_task_ids(cfg, bench)[0]]
    ep = sample_episode(task, cfg.k_shot, cfg.n_query, np.random.default_rng(0), cfg.train_queries == "balanced")
    gs, ys, gq, _ = episode_batch([ep], cache)
    first = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
    key = jax.random.key(cfg.seed)
    return model.init({"params": key, "dropout": key}, first(gs), ys[0], first(gq))["params"]


def train_task_ids(cfg: HiMPPConfig, bench: FewShotBenchmark) -> list[int]:
    """Training tasks that can fill an episode (K per class in the support, then the queries)."""
    balanced = cfg.train_queries == "balanced"
    kept = [t for t in bench.train_tasks if fits_episode(bench.tasks[t], cfg.k_shot, cfg.n_query, balanced)]
    if not kept:
        raise ValueError(f"{bench.name}: no training task can fill a {cfg.k_shot}-shot episode with {cfg.n_query} "
                         f"{cfg.train_queries} queries")
    return kept


def peak_memory_bytes() -> int:
    """Peak memory of the first accelerator (0 on CPU, whose allocator keeps no statistics)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    return int(stats.get("peak_bytes_in_use", 0))


def train(cfg: HiMPPConfig, bench: FewShotBenchmark, out: str | Path, cache: GraphCache | None = None,
          init: Any | None = None, run: Run | None = None, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Meta-train ``cfg.method`` on the benchmark's training tasks; resumes from ``out/checkpoint.pkl``.

    ``init`` replaces the encoder's pretrained parts before training (Pre-GNN weights or attribute masking). With
    ``eval_every`` the model is also tested every that many steps (and at the last), one support draw per test task
    and every query, as PAR / PACIA's ``test_step`` does: the history behind the best-over-checkpoints column.
    """
    check_disjoint(bench)
    cache = cache or GraphCache()
    out = Path(out)
    model = make_model(cfg)
    train_ids = train_task_ids(cfg, bench)
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        try:
            state = load_checkpoint(ckpt)
        except CheckpointError as err:
            raise CheckpointError(f"{err}; delete it to start over") from err
        params, opt_state, start = state["params"], state["opt_state"], state["step"]
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        losses, checkpoint_aucs = list(state["losses"]), list(state.get("checkpoint_aucs", []))
    else:
        params = init_params(model, cfg, bench, cache)
        if init is not None:
            params = {**params, "encoder": {**params["encoder"], **init}}
        opt_state, start, losses = make_optimizer(cfg.lr, cfg.weight_decay).init(params), 0, []
        checkpoint_aucs: list[tuple[int, float]] = []
        rng = np.random.default_rng(cfg.seed)
    mesh = episode_mesh(cfg.devices, cfg.tasks_per_batch)
    step_fn = make_train_step(model, cfg.lr, cfg.weight_decay, mesh)
    shard = NamedSharding(mesh, PartitionSpec("episodes"))
    base_key = jax.random.key(cfg.seed)
    balanced = cfg.train_queries == "balanced"
    train_time, eval_time = 0.0, 0.0
    bar = tqdm(range(start, cfg.steps), desc=f"train {cfg.method} {bench.name} {cfg.k_shot}-shot",
               disable=not progress, initial=start, total=cfg.steps, leave=False)
    for step in bar:
        t0 = time.perf_counter()
        task_ids = rng.choice(train_ids, size=cfg.tasks_per_batch, replace=len(train_ids) < cfg.tasks_per_batch)
        episodes = [sample_episode(bench.tasks[t], cfg.k_shot, cfg.n_query, rng, balanced) for t in task_ids]
        batch = jax.device_put(episode_batch(episodes, cache), shard)
        params, opt_state, loss = step_fn(params, opt_state, *batch, jax.random.fold_in(base_key, step))
        loss = float(loss)
        train_time += time.perf_counter() - t0
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {step}")
        losses.append(loss)
        bar.set_postfix(loss=f"{loss:.4f}")
        logged: dict[str, float] = {}
        if (step + 1) % cfg.log_every == 0:
            logged["train_loss"] = float(np.mean(losses[-cfg.log_every:]))
        if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            t1 = time.perf_counter()
            auc = evaluate(cfg, bench, params, cache, repeats=1, draw_offset=1000 + step, progress=False)["roc_auc"]
            eval_time += time.perf_counter() - t1
            checkpoint_aucs.append((step + 1, auc))
            logged["test_roc_auc_checkpoint"] = auc
        if run is not None and logged:
            run.log(step + 1, **logged)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_checkpoint(ckpt, {"params": jax.device_get(params), "opt_state": jax.device_get(opt_state),
                                   "step": step + 1, "rng": rng.bit_generator.state, "losses": losses,
                                   "checkpoint_aucs": checkpoint_aucs})
    done = cfg.steps - start
    return params, {"train_loss_first": float(np.mean(losses[:10])) if losses else float("nan"),
                    "train_loss_last": float(np.mean(losses[-10:])) if losses else float("nan"),
                    "first_loss": losses[0] if losses else float("nan"),
                    "final_loss": losses[-1] if losses else float("nan"),
                    "prior_loss": prior_loss(cfg, bench, train_ids),
                    "train_steps": cfg.steps, "train_seconds": train_time, "checkpoint_eval_seconds": eval_time,
                    "steps_per_s": done / train_time if train_time else float("nan"),
                    "samples_per_s": done * cfg.tasks_per_batch / train_time if train_time else float("nan"),
                    "devices": mesh.size, "peak_gpu_memory_bytes": peak_memory_bytes(),
                    "checkpoint_aucs": checkpoint_aucs, "losses": losses}


def prior_loss(cfg: HiMPPConfig, bench: FewShotBenchmark, train_ids: Sequence[int]) -> float:
    """Cross-entropy of always predicting the training queries' positive rate: the loss of a model that learnt
    nothing but the class prior (ln 2 for balanced queries), to read training convergence against."""
    if cfg.train_queries == "balanced":
        return float(np.log(2.0))
    rates = []
    for t in train_ids:  # expected query positive rate of each task: the rest of it after the balanced support
        task = bench.tasks[t]
        rates.append((task.n_pos - cfg.k_shot) / (len(task.labels) - 2 * cfg.k_shot))
    p = float(np.mean(rates))
    return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)))


@functools.cache
def make_scorers(model: FewShotModel):
    """Jitted support pass (embeddings and hypernetwork outputs) and query scoring (P(active))."""

    @jax.jit
    def support_fn(params, gs, ys):
        return model.apply({"params": params}, gs, ys, method=FewShotModel.encode_support)

    def _score(m: FewShotModel, s, ys, films, gq):
        q = m.encode_queries(gq, films)
        layer_logits, scores = m.predict(s, ys, q)
        logits = select_layer_logits(layer_logits, scores) if uses_molecule_level(m.method) else layer_logits[:, -1]
        return jax.nn.softmax(logits, axis=-1)[:, 1]

    @jax.jit
    def query_fn(params, s, ys, films, gq):
        return model.apply({"params": params}, s, ys, films, gq, method=_score)

    return support_fn, query_fn


def score_episode(support_fn, query_fn, params: Any, ep: Episode, cache: GraphCache, chunk: int) -> np.ndarray:
    """P(active) for every query of a test episode, scored in fixed-size chunks (padded with repeats)."""
    sup = [cache(s) for s in ep.support_smiles]
    gs = batch_graphs(sup, *padding([sup]))
    s, films = support_fn(params, gs, ep.support_labels)
    graphs = [cache(q) for q in ep.query_smiles]
    out = []
    for i in range(0, len(graphs), chunk):
        part = graphs[i:i + chunk]
        n = len(part)
        part = part + [part[-1]] * (chunk - n)
        gq = batch_graphs(part, *padding([part]))
        out.append(np.asarray(query_fn(params, s, ep.support_labels, films, gq))[:n])
    return np.concatenate(out)


def evaluate(cfg: HiMPPConfig, bench: FewShotBenchmark, params: Any, cache: GraphCache | None = None,
             method: str | None = None, progress: bool = True, repeats: int | None = None,
             draw_offset: int = 0) -> dict[str, Any]:
    """Sec. 4.1: ROC-AUC on each test task, averaged over tasks, for ``repeats`` (default ``test_repeats``) support
    draws per task; the spread is reported as the standard error of the per-draw means."""
    check_disjoint(bench)
    cache = cache or GraphCache()
    model = make_model(cfg, method)
    support_fn, query_fn = make_scorers(model)
    test_ids = usable_tasks(bench, bench.test_tasks, cfg.k_shot, 1)
    repeats = repeats or cfg.test_repeats
    per_repeat = np.zeros((repeats, len(test_ids)))
    t0, n_episodes, n_queries = time.perf_counter(), 0, 0
    jobs = [(r, j, t) for r in range(repeats) for j, t in enumerate(test_ids)]
    for r, j, t in tqdm(jobs, desc=f"test {model.method} {bench.name}", disable=not progress, leave=False):
        rng = np.random.default_rng([cfg.seed, t, draw_offset + r])
        ep = sample_test_episode(bench.tasks[t], cfg.k_shot, rng, cfg.test_max_queries, cfg.test_keep_positives)
        per_repeat[r, j] = roc_auc(ep.query_labels, score_episode(support_fn, query_fn, params, ep, cache,
                                                                  cfg.query_chunk))
        n_episodes += 1
        n_queries += len(ep.query_labels)
    mean_over_tasks = per_repeat.mean(axis=1)
    sem = float(mean_over_tasks.std(ddof=1) / np.sqrt(repeats)) if repeats > 1 else float("nan")
    return {"roc_auc": float(mean_over_tasks.mean()), "roc_auc_sem": sem,
            "roc_auc_per_draw": mean_over_tasks.tolist(),
            "per_task": {bench.tasks[t].name or str(t): float(per_repeat[:, j].mean()) for j, t in enumerate(test_ids)},
            "test_episodes": n_episodes, "test_queries": n_queries, "test_seconds": time.perf_counter() - t0}
