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
