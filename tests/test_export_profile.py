"""`edge_export.profile`: LiteRT delegation analysis and ONNX Runtime's
per-operator profile, on graphs whose answer is known by construction."""

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("onnxruntime")


def write_litert(path, function, shape=(4, 8)):
    import tensorflow as tf

    concrete = tf.function(function, input_signature=[tf.TensorSpec(shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [concrete.get_concrete_function()], concrete
    )
    path.write_bytes(converter.convert())
    return path


def test_litert_delegation_of_a_graph_xnnpack_takes_whole(tmp_path):
    from keras_spiking_tf.edge_export.profile import litert_delegation

    path = write_litert(tmp_path / "all.tflite", lambda x: (x * 3.0 + 1.0) * x)
    report = litert_delegation(path)
    assert report["partitions"] == 1
    assert report["not_delegated"] == {}
    assert report["delegated"] == report["operators"] == 3
    assert report["quantize"] == report["dequantize"] == 0


def test_litert_delegation_finds_the_comparison_that_splits_the_graph(tmp_path):
    import tensorflow as tf

    from keras_spiking_tf.edge_export.profile import litert_delegation

    # mul -> (GREATER_EQUAL -> CAST: not taken by XNNPACK) -> add -> mul
    def spiking(x):
        h = x * 3.0
        s = tf.cast(h >= 1.0, tf.float32)
        return (s + 1.0) * h

    report = litert_delegation(write_litert(tmp_path / "split.tflite", spiking))
    assert report["not_delegated"] == {"GREATER_EQUAL": 1, "CAST": 1}
    assert report["operators"] == 5 and report["delegated"] == 3
    assert report["partitions"] == 2  # the mul before, the add and mul after
    assert report["op_counts"]["GREATER_EQUAL"] == {"bool": 1}


def test_onnx_operator_profile_accounts_for_every_operator(tmp_path):
    import onnx
    from onnx import TensorProto
    from onnx import helper
    from onnx import numpy_helper

    from keras_spiking_tf.edge_export.profile import onnx_operator_profile

    rng = np.random.default_rng(0)
    weights = rng.standard_normal((64, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="product"),
         helper.make_node("Floor", ["y"], ["z"], name="floor")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 64])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), path)

    profile = onnx_operator_profile(path, rng.standard_normal((256, 64)).astype(np.float32),
                                    num_threads=1, runs=4)
    kinds = {row["op_type"]: row for row in profile["by_op_type"]}
    assert set(kinds) == {"MatMul", "Floor"}
    assert kinds["MatMul"]["nodes"] == kinds["Floor"]["nodes"] == 1
    assert sum(row["share"] for row in profile["by_op_type"]) == pytest.approx(1.0, abs=1e-3)
    assert profile["total_ms"] == pytest.approx(sum(r["ms"] for r in kinds.values()), rel=1e-2)
    assert {node["name"] for node in profile["slowest_nodes"]} == {"product", "floor"}
    assert profile["runs"] == 4


def write_products_litert(path, int8):
    """A graph with a strided conv, a depthwise conv, two equal dense
    products and an attention-like product, dynamic batch:
    (B, 16, 16, 2) -> (B, 64, 64)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    depthwise = rng.standard_normal((3, 3, 4, 1)).astype(np.float32)
    w1, w2 = (rng.standard_normal((4, 6)).astype(np.float32) for _ in range(2))

    @tf.function(input_signature=[tf.TensorSpec((None, 16, 16, 2), tf.float32)])
    def net(x):
        h = tf.nn.relu(tf.nn.conv2d(x, kernel, 2, "SAME"))      # (B, 8, 8, 4)
        h = tf.nn.depthwise_conv2d(h, depthwise, [1, 1, 1, 1], "VALID")  # (B, 6, 6, 4)
        rows = tf.reshape(h, (-1, 4))                           # (B * 36, 4)
        a = tf.reshape(tf.matmul(rows, w1), (-1, 36, 6))
        b = tf.reshape(tf.matmul(rows, w2), (-1, 36, 6))
        return tf.matmul(a, b, transpose_b=True)                # (B, 36, 36)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [net.get_concrete_function()], net)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.standard_normal((1, 16, 16, 2)).astype(np.float32)] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path.write_bytes(converter.convert())
    return path


@pytest.mark.parametrize("int8", [False, True])
def test_litert_product_profile_rebuilds_each_product_with_its_shapes(tmp_path, int8):
    from keras_spiking_tf.edge_export.profile import litert_product_profile

    path = write_products_litert(tmp_path / "products.tflite", int8)
    profile = litert_product_profile(path, batch_size=3, num_threads=1, runs=5)
    by_op = {entry["op"]: entry for entry in profile["operators"]}
    assert sorted(by_op) == ["BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]
    conv, dense, attention = by_op["CONV_2D"], by_op["FULLY_CONNECTED"], by_op["BATCH_MATMUL"]
    depthwise = by_op["DEPTHWISE_CONV_2D"]
    # Shapes at batch 3, derived by hand from the graph above.
    assert conv["input_shape"] == [3, 16, 16, 2] and conv["output_shape"] == [3, 8, 8, 4]
    assert conv["options"] == {"strides": [2, 2], "dilations": [1, 1], "padding": "SAME"}
    assert conv["macs"] == 3 * 8 * 8 * 4 * (3 * 3 * 2)
    assert depthwise["output_shape"] == [3, 6, 6, 4] and depthwise["options"]["padding"] == "VALID"
    assert depthwise["macs"] == 3 * 6 * 6 * 4 * (3 * 3)
    assert dense["count"] == 2, "the two equal dense products are built and timed once"
    assert dense["input_shape"] == [108, 4] and dense["output_shape"] == [108, 6]
    assert dense["macs"] == 108 * 4 * 6
    assert attention["output_shape"] == [3, 36, 36] and attention["options"]["adj_y"]
    assert attention["macs"] == 3 * 36 * 36 * 6
    arithmetic = "int8" if int8 else "float32"
    assert conv["arithmetic"] == depthwise["arithmetic"] == dense["arithmetic"] == arithmetic
    assert profile["macs"] == (conv["macs"] + depthwise["macs"] + 2 * dense["macs"]
                               + attention["macs"])
    assert profile["batch_size"] == 3
    assert all(entry["ms"] > 0 for entry in profile["operators"])
    total = sum(entry["ms"] * entry["count"] for entry in profile["operators"])
    assert profile["products_ms"] == pytest.approx(total, rel=1e-3)
    assert profile["file_ms"] > 0
    # The share is computed before the times are rounded to 1e-4 ms: bound
    # the ratio of the rounded times by that rounding (and the share's own).
    products, whole, half = profile["products_ms"], profile["file_ms"], 0.5e-4
    assert (products - half) / (whole + half) - half <= profile["products_share"] <= (
        (products + half) / (whole - half) + half)


def test_tensorflow_operator_profile_accounts_for_every_operator():
    import keras

    from keras_spiking_tf.edge_export.profile import tensorflow_operator_profile

    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's profiler profiles the TensorFlow backend")
    inputs = keras.Input((64,))
    product = keras.layers.Dense(512, use_bias=False)(inputs)
    outputs = keras.ops.floor(product) * 3.0
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    profile = tensorflow_operator_profile(model, rng.standard_normal((256, 64)), num_threads=1,
                                          runs=3)
    kinds = {row["op_type"]: row for row in profile["by_op_type"]}
    # The dense product, the floor and the scaling, nothing else of the graph.
    assert {"MatMul", "Floor", "Mul"} <= set(kinds) <= {"MatMul", "Floor", "Mul", "Identity"}
    assert kinds["MatMul"]["nodes"] == kinds["Floor"]["nodes"] == 1
    assert sum(row["share"] for row in profile["by_op_type"]) == pytest.approx(1.0, abs=1e-3)
    assert profile["total_ms"] == pytest.approx(sum(r["ms"] for r in kinds.values()), rel=1e-2)
    assert profile["runs"] == 3


def test_operator_types_read_the_same_on_every_cpu():
    from keras_spiking_tf.edge_export.profile import _portable_op_type

    # TensorFlow's oneDNN rewrites (x86 with AVX-512) against the graph's own names.
    assert _portable_op_type("_MklMatMul") == "MatMul"
    assert _portable_op_type("_MklNativeFusedConv2D") == "_FusedConv2D"
    assert _portable_op_type("_MklFusedMatMul") == "_FusedMatMul"
    assert _portable_op_type("_MklNativeConv2D") == "Conv2D"
    assert _portable_op_type("_FusedConv2D") == "_FusedConv2D"
    assert _portable_op_type("Floor") == "Floor"
