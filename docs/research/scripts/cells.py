"""The research scripts' unit of measurement: a model's unseen pairs of one set under one camera variant."""
import json

from codegen.benchmark import with_folds
from training.evaluate import model_pairs, with_variant

VARIANTS = ("clean", "gray", "lowres")


def model_cells(model, sets, variants=VARIANTS):
    """Yield ("set/variant", pairs) for every set of ``sets`` (``training.evaluate.model_pairs`` names: the
    model's held-out or validation folds) under every variant of ``variants`` (``training.data.variants``)."""
    for name in sets:
        base = with_folds(model_pairs(name, model, 1, False))
        for variant in variants:
            yield f"{name}/{variant}", with_variant(base, variant)


def record(res: dict, key: str, rows: dict) -> None:
    """Keep one cell's rows in ``res`` and print them as they come (a screen spends minutes per cell)."""
    res[key] = rows
    print(key, json.dumps(rows, ensure_ascii=False), flush=True)


def write_json(res: dict, out: str) -> None:
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
