"""Zero-shot accuracy through lm-evaluation-harness, as the OWL paper reports it (Sec. 4.2, Table 3: BoolQ, RTE,
HellaSwag, WinoGrande, ARC-e, ARC-c, OBQA; the official code calls lm-eval's ``simple_evaluate`` the same way).

lm-eval reads each task's data through ``datasets``: with a network it downloads them; offline it needs them in
the ``datasets`` cache (``HF_HOME``) or a local task YAML (``zero_shot_include``: a folder lm-eval's
``TaskManager`` searches, e.g. a task with ``dataset_path: json`` and ``data_files`` on disk).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch

from shared.runs import UserError

METRICS = ("acc", "acc_norm")


@functools.lru_cache(maxsize=4)
def _task_manager(include_path: str | None) -> Any:
    """lm-eval's task index (its ~230 task folders plus ``include_path``), built once per process (seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path)


def zero_shot(model: torch.nn.Module, tokenizer: Any, tasks: list[str], *, include_path: str | None = None,
              limit: int | None = None, batch_size: int = 8, add_bos: bool = False) -> dict[str, dict[str, float]]:
    """task -> {acc, acc_stderr, acc_norm, acc_norm_stderr} (those the task defines), 0-shot, on the model as it
    is (pruned or dense). Unknown tasks and tasks whose data cannot be read are user errors naming the task."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    manager = _task_manager(include_path)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        where = f" or in {include_path}" if include_path else " (zero_shot_include adds a folder of task YAMLs)"
        raise UserError(f"unknown lm-eval task(s) {unknown}: not among lm-eval's {len(manager.all_tasks)} tasks{where}")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, add_bos_token=add_bos,
              device=str(next(model.parameters()).device))
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    try:
        out = simple_evaluate(model=lm, tasks=list(tasks), num_fewshot=0, task_manager=manager, limit=limit,
                              log_samples=False, bootstrap_iters=1000)
    except (OSError, ValueError) as err:  # datasets' not-found / offline errors are OSErrors
        raise UserError(f"zero-shot tasks {tasks}: their data could not be loaded ({type(err).__name__}: "
                        f"{str(err)[:200]}). lm-eval reads them through `datasets`: put them in its cache (HF_HOME, "
                        f"HF_DATASETS_OFFLINE=1 offline) or point zero_shot_include at local task YAMLs") from err
    results = {}
    for task in tasks:
        row = out["results"][task]
        results[task] = {f"{m}{s}": float(row[f"{m}{s},none"]) for m in METRICS for s in ("", "_stderr")
                         if f"{m}{s},none" in row and row[f"{m}{s},none"] != "N/A"}
    return results
