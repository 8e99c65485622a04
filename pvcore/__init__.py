"""The bottom layer of the project: what every stage shares and nothing else.

The verifier's architecture spec (``spec``), the quantized θ record and TFLM's parameter arithmetic
(``qtheta``), the θ blob format (``blob``), the user store (``user_store``), paths, atomic writes and the
command-line conventions (``cli``). It needs NumPy only — never PyTorch — and imports nothing from
``training``, ``codegen`` or ``host_tools``; they all import it (see ``tests/test_layers.py``).
"""
