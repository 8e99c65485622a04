"""Research: int8 inputs and TFLite's own int8 L2_NORMALIZATION outputs, for l2norm_int8.py to be checked against.
A Keras ``tf.math.l2_normalize`` over 96 channels, converted to a full-int8 .tflite (the converter fuses it into one
L2_NORMALIZATION op) and run by TFLite's reference kernels (``OpResolverType.BUILTIN_REF``) on random, small,
saturated and all-zero-point rows. Needs TensorFlow: run it with the onnx2tf venv (``.ci/setup-onnx2tf``).
Usage: .venv-onnx2tf/bin/python docs/research/scripts/l2norm_tflite_io.py OUT.npz"""
import sys

import numpy as np
import tensorflow as tf


def main() -> None:
    inp = tf.keras.Input((96,))
    model = tf.keras.Model(inp, tf.keras.layers.Lambda(lambda x: tf.math.l2_normalize(x, axis=-1))(inp))
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(200):
            yield [rng.normal(0, 1, (1, 96)).astype(np.float32) * rng.uniform(0.5, 2)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    it = tf.lite.Interpreter(model_content=conv.convert(),
                             experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    ops = [d["op_name"] for d in it._get_ops_details()]
    if ops != ["L2_NORMALIZATION"]:
        raise SystemExit(f"expected one L2_NORMALIZATION op, the converter gave {ops}")
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    zp = int(i["quantization"][1])
    x = np.concatenate([rng.integers(-128, 128, (3000, 96)), rng.integers(-20, 20, (500, 96)),
                        rng.integers(-2, 3, (200, 96)), np.full((5, 96), 127), np.full((5, 96), -128),
                        np.full((5, 96), zp)]).astype(np.int8)
    y = []
    for row in x:
        it.set_tensor(i["index"], row[None])
        it.invoke()
        y.append(it.get_tensor(o["index"])[0].copy())
    np.savez(sys.argv[1], x=x, y=np.array(y), zp=zp)
    print(f"{len(x)} rows, input zero point {zp}, output quantization {o['quantization']}")


if __name__ == "__main__":
    main()
