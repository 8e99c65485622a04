"""Architectures other than the shipped one, for the parts of the toolchain F_SPEC no longer reaches.

``SPEC_V4``: f of spec v4 — the same layers as spec v5 but a global pool (``AvgPool``, kernel 1 after gdc)
where v5 normalizes, and fc1's gain without the feature length. The Python toolchain still quantizes, packs
and runs a spec with a global pool (the exact-sum pool and blob format 4 exist for it), so its tests run on
this spec."""

from dataclasses import replace

from pvcore.spec import F_SPEC, FEATURE_LENGTH, ArchSpec, AvgPool, Dense, L2Norm

SPEC_V4 = ArchSpec(
    name=F_SPEC.name,
    input_hw=F_SPEC.input_hw,
    input_ch=F_SPEC.input_ch,
    layers=tuple(AvgPool(la.name, kernel=1) if isinstance(la, L2Norm)
                 else replace(la, gain=la.gain / FEATURE_LENGTH) if isinstance(la, Dense) and la.name == "fc1"
                 else la for la in F_SPEC.layers),
    version=4,
)
