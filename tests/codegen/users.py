"""Three enrolled users in a temporary user store, as pvcore.user_store writes them: two random θ
(``random_theta``) and one θ from the (untrained) generator h_gen. Used by the emitter tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pvcore.user_store import UserStore
from tests.codegen.conftest import hgen_theta
from training.verifier.functional import random_theta

USERS = {
    "alice": (lambda: random_theta(0), 0.0),
    "bob": (lambda: random_theta(1), 0.05),
    "carol": (lambda: hgen_theta(7), -0.02),
}


def make_store(root: Path) -> UserStore:
    """carol's entry also keeps an enrollment crop (a package face), which emit calibrates on."""
    from codegen.quantize import package_faces

    store = UserStore(root)
    for name, (make, thr) in USERS.items():
        theta = make().numpy().astype(np.float32)
        crop = package_faces()[1] if name == "carol" else None
        store.save(name, theta, backbone="mobilefacenet-y1", hypermodel_id="test-untrained", threshold=thr,
                   source_image=f"{name}.jpg", crop=crop)
    return store
