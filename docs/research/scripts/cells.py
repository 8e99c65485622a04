"""The research scripts' unit of measurement: a model's unseen pairs of one set under one camera variant."""
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
