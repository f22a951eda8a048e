"""Where a model's time goes: per-operator profiles in each runtime.

- `litert_delegation(path)`: how the LiteRT CPU delegate (XNNPACK) takes
  the graph. The operators it does not take run on LiteRT's reference
  kernels, one at a time, and split the graph into several delegated
  partitions (each boundary costs a copy and a synchronisation). The LiteRT
  Python interpreter has no per-operator timer (the op profiler is in the
  C++ `benchmark_model` tool only), so this and the next are LiteRT's
  profile here: the partitions, the operators left outside them, and the
  QUANTIZE / DEQUANTIZE operators a full-int8 file inserts between int8
  and float islands.
- `litert_product_profile(path)`: LiteRT's time for the products alone
  (convolutions, dense and attention products), each rebuilt as a
  one-operator file with the same shapes and arithmetic and timed under
  XNNPACK: per-operator times for the operators that hold the FLOPs, and
  their sum, the floor under the file's latency that no rewrite of the rest
  of the graph can go below.
- `onnx_operator_profile(path, images)`: ONNX Runtime's own profiler
  (`SessionOptions.enable_profiling`), total time per operator type of the
  graph ORT actually runs (after its fusions, e.g. `FusedMatMul`, `FusedConv`).
- `tensorflow_operator_profile(model, images)`: the same for Keras on
  TensorFlow (without XLA), from a fully traced TensorFlow session run of
  the model's frozen graph.

Example:

```python
delegation = litert_delegation("model.tflite")
delegation["partitions"], delegation["not_delegated"]   # 1, {}
products = litert_product_profile("model.tflite", batch_size=1, num_threads=2)
products["products_ms"], products["file_ms"]
profile = onnx_operator_profile("model.onnx", images[:1])
profile["by_op_type"][0]     # {"op_type": "MatMul", "ms": ..., "share": ...}
```
"""

import collections
import json
import os
import tempfile

from keras_spiking_tf import validation
from keras_spiking_tf.edge_export.litert import litert_op_counts
from keras_spiking_tf.optional_dependencies import require


MAX_RUNS = 100_000


_NOT_TAKEN = object()  # an argument that the profile function does not take


def _check_profile_arguments(path=_NOT_TAKEN, suffix=None, model=_NOT_TAKEN, images=_NOT_TAKEN,
                             batch_size=_NOT_TAKEN, num_threads=None, runs=_NOT_TAKEN,
                             top=_NOT_TAKEN):
    """The profile functions' arguments (those the function takes), before
    anything runs."""
    import keras

    from keras_spiking_tf.edge_export.export_utils import MAX_BATCH_SIZE
    from keras_spiking_tf.edge_export.export_utils import check_num_threads

    if path is not _NOT_TAKEN:
        path = validation.check_path("path", path, kind="file")
        if not path.endswith(suffix):
            raise validation.invalid("path", path, f"a '{suffix}' file")
    if model is not _NOT_TAKEN and not isinstance(model, keras.Model):
        raise validation.invalid("model", model, "a Keras model", error=TypeError)
    if images is not _NOT_TAKEN:
        validation.check_batch("images", images)
    if batch_size is not _NOT_TAKEN:
        validation.check_integer("batch_size", batch_size, minimum=1, maximum=MAX_BATCH_SIZE)
    check_num_threads("num_threads", num_threads)
    for name, value in (("runs", runs), ("top", top)):
        if value is not _NOT_TAKEN:
            validation.check_integer(name, value, minimum=1, maximum=MAX_RUNS)


def _litert_interpreter(purpose):
    """The LiteRT interpreter module (the `export` extra)."""
    return require("ai_edge_litert.interpreter", purpose)

def litert_delegation(path, num_threads=1):
    """How XNNPACK (LiteRT's default CPU delegate) partitions a `.tflite` file.

    Args:
        path: the LiteRT file.
        num_threads: interpreter threads (the partitioning does not depend on it).

    Returns:
        A dict: `partitions` (delegated subgraphs), `operators` (in the file),
        `delegated` (of those, taken by the delegate), `not_delegated`
        (`{op name: count}` of the operators LiteRT runs itself),
        `quantize` / `dequantize` (QUANTIZE and DEQUANTIZE operators in the
        file) and `op_counts` (`{op name: {output dtype: count}}`).
    """
    _check_profile_arguments(path=path, suffix=".tflite", num_threads=num_threads)
    Interpreter = _litert_interpreter("LiteRT profiling").Interpreter

    interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()
    delegates = [node for node in nodes if node["op_name"] == "DELEGATE"]
    operators = [node for node in nodes if node["op_name"] != "DELEGATE"]
    producer = {int(t): node for node in operators for t in node["outputs"]}
    # A partition is closed between its inputs and outputs: walking back
    # from its outputs to its inputs visits exactly its operators.
    delegated = set()
    for delegate in delegates:
        boundary = {int(t) for t in delegate["inputs"]}
        stack = [int(t) for t in delegate["outputs"]]
        while stack:
            tensor = stack.pop()
            node = producer.get(tensor)
            if tensor in boundary or node is None or node["index"] in delegated:
                continue
            delegated.add(node["index"])
            stack.extend(int(t) for t in node["inputs"] if t >= 0)
    not_delegated = collections.Counter(
        node["op_name"] for node in operators if node["index"] not in delegated
    )
    with open(path, "rb") as file:
        counts = litert_op_counts(file.read())
    return {
        "partitions": len(delegates),
        "operators": len(operators),
        "delegated": len(delegated),
        "not_delegated": dict(not_delegated.most_common()),
        "quantize": sum(counts.get("QUANTIZE", {}).values()),
        "dequantize": sum(counts.get("DEQUANTIZE", {}).values()),
        "op_counts": counts,
    }


def onnx_operator_profile(path, images, num_threads=None, runs=10, top=8):
    """ONNX Runtime's profile of `runs` calls on `images`, by operator type.

    Args:
        path: the ONNX file.
        images: one batch in the file's input space (what `load_exported`
            would pass on).
        num_threads: intra-op threads (`None`: ORT's default).
        runs: profiled calls (after one unprofiled warm-up inside the session).
        top: how many of the slowest nodes to list.

    Returns:
        A dict: `by_op_type` (list of `{op_type, ms, share, nodes}`, slowest
        first, `ms` per call), `slowest_nodes` (`{name, op_type, ms}`),
        `total_ms` (per call, summed over nodes) and `runs`.
    """
    _check_profile_arguments(path=path, suffix=".onnx", images=images, num_threads=num_threads,
                             runs=runs, top=top)
    import numpy as np

    from keras_spiking_tf.edge_export.onnx import Runner

    with tempfile.TemporaryDirectory(prefix="keras_spiking_tf_ort_profile_") as directory:
        runner = Runner(os.fspath(path), num_threads,
                        profile_prefix=os.path.join(directory, "ort"))
        runner(np.asarray(images))  # warm-up: the first call also plans memory
        for _ in range(runs):
            runner(np.asarray(images))
        with open(runner.session.end_profiling(), encoding="utf-8") as file:
            events = json.load(file)
    node_events = [
        event for event in events
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
    ]
    # Each node runs once per call; its first event is the warm-up's.
    per_node = collections.defaultdict(float)
    op_type = {}
    for event in node_events:
        name = event["name"][: -len("_kernel_time")]
        if name not in op_type:
            op_type[name] = event["args"].get("op_name", "?")
            continue
        per_node[name] += event["dur"]
    if not per_node:
        raise RuntimeError(f"ONNX Runtime recorded no operator events for '{path}'.")
    return _by_op_type(per_node, op_type, runs, top)


def _by_op_type(per_node, op_type, runs, top):
    """Per-node microseconds summed over `runs` calls -> the profile dict."""
    scale = 1e-3 / runs  # microseconds over all calls -> milliseconds per call
    total = sum(per_node.values())
    by_type = collections.defaultdict(lambda: [0.0, 0])
    for name, duration in per_node.items():
        by_type[op_type[name]][0] += duration
        by_type[op_type[name]][1] += 1
    return {
        "by_op_type": [
            {"op_type": kind, "ms": round(duration * scale, 4),
             "share": round(duration / total, 4), "nodes": count}
            for kind, (duration, count) in sorted(by_type.items(), key=lambda kv: -kv[1][0])
        ],
        "slowest_nodes": [
            {"name": name, "op_type": op_type[name], "ms": round(duration * scale, 4)}
            for name, duration in sorted(per_node.items(), key=lambda kv: -kv[1])[:top]
        ],
        "total_ms": round(total * scale, 4),
        "runs": runs,
    }


# The operators whose work is counted as FLOPs (2 x multiply-accumulates):
# the weight products (synapses) and the attention products.
PRODUCT_OPERATORS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")


def litert_product_profile(path, batch_size=1, num_threads=None, runs=30):
    """Each product operator of a `.tflite` file timed alone, in LiteRT.

    The LiteRT Python interpreter times only whole calls. This rebuilds every
    `PRODUCT_OPERATORS` operator of the file as a one-operator LiteRT file
    with the same shapes at `batch_size`, the same options (strides,
    padding, dilation, transposes) and the same arithmetic (`"int8"` when its
    input is int8, `"dynamic_int8"` for a float input with int8 weights, else
    `"float32"`), with random weights, and times it under XNNPACK as the file
    runs. Identical operators are built and timed once. The sum over them is
    what the products alone cost in this runtime: a floor under the file's
    latency that no change to the rest of the graph (neurons, shortcuts,
    layout) can go below.

    Args:
        path: the LiteRT file.
        batch_size: the batch to profile (the file's batch axis is resized).
        num_threads: interpreter threads (`None`: LiteRT's default).
        runs: timed calls per operator (median), after 3 warm-up calls.

    Returns:
        A dict: `operators` (one entry per distinct operator: `op`,
        `arithmetic`, `input_shape`, `weight_shape`, `output_shape`, `macs`,
        `count`, `ms` per call of one, `gops` = 2·MACs / time), `products_ms`
        (sum over all product operators of the file), `file_ms` (the whole
        file, timed the same way), `products_share` (`products_ms / file_ms`),
        `macs` (total per call) and `batch_size`.

    Example:

    ```python
    profile = litert_product_profile("model_int8.tflite", batch_size=1, num_threads=2)
    profile["products_ms"], profile["file_ms"]     # e.g. 2.9, 4.5
    ```
    """
    _check_profile_arguments(path=path, suffix=".tflite", batch_size=batch_size,
                             num_threads=num_threads, runs=runs)
    litert = _litert_interpreter("litert_product_profile()")
    Interpreter, OpResolverType = litert.Interpreter, litert.OpResolverType

    with open(path, "rb") as file:
        operators = _product_operators(file.read())
    # LiteRT's own kernels give every tensor its shape at `batch_size`
    # (inside a delegated partition tensors keep the file's stored shapes),
    # and one call sets the shapes that only running computes (the dynamic
    # reshapes of a graph that is not the inference graph).
    interpreter = Interpreter(
        model_path=os.fspath(path), num_threads=num_threads,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    detail = interpreter.get_input_details()[0]
    shape = [batch_size, *(int(d) for d in detail["shape_signature"][1:])]
    interpreter.resize_tensor_input(detail["index"], shape, strict=True)
    interpreter.allocate_tensors()
    _set_random_inputs(interpreter)
    interpreter.invoke()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    distinct = {}
    for operator in operators:
        entry = _product_signature(operator, tensors)
        key = json.dumps(entry, sort_keys=True)
        if key in distinct:
            distinct[key]["count"] += 1
        else:
            distinct[key] = {**entry, "count": 1}
    with tempfile.TemporaryDirectory(prefix="keras_spiking_tf_products_") as directory:
        for i, entry in enumerate(distinct.values()):
            single = os.path.join(directory, f"op{i}.tflite")
            with open(single, "wb") as file:
                file.write(_single_product_file(entry))
            _check_single_product_file(single, entry)
            entry["ms"] = round(1e3 * _median_invoke_seconds(single, num_threads, runs), 4)
            entry["gops"] = round(2 * entry["macs"] / entry["ms"] / 1e6, 2)
    file_ms = 1e3 * _median_invoke_seconds(os.fspath(path), num_threads, runs, shape)
    products_ms = sum(e["ms"] * e["count"] for e in distinct.values())
    return {
        "operators": sorted(distinct.values(), key=lambda e: -e["ms"] * e["count"]),
        "products_ms": round(products_ms, 4),
        "file_ms": round(file_ms, 4),
        "products_share": round(products_ms / file_ms, 4),
        "macs": sum(e["macs"] * e["count"] for e in distinct.values()),
        "batch_size": batch_size,
    }


def _product_operators(model_bytes):
    """`[{op, inputs, options}]` for the product operators of subgraph 0."""
    schema = require("ai_edge_litert.schema_py_generated", "litert_product_profile()")

    from keras_spiking_tf.edge_export.litert import operator_code_names

    model = schema.Model.GetRootAs(bytearray(model_bytes), 0)
    codes = operator_code_names(model)
    subgraph = model.Subgraphs(0)
    found = []
    for o in range(subgraph.OperatorsLength()):
        operator = subgraph.Operators(o)
        op = codes[operator.OpcodeIndex()]
        if op not in PRODUCT_OPERATORS:
            continue
        table = operator.BuiltinOptions()
        options = {}
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            kind = schema.Conv2DOptions if op == "CONV_2D" else schema.DepthwiseConv2DOptions
            parsed = kind()
            parsed.Init(table.Bytes, table.Pos)
            options = {
                "strides": [parsed.StrideH(), parsed.StrideW()],
                "dilations": [parsed.DilationHFactor(), parsed.DilationWFactor()],
                "padding": "SAME" if parsed.Padding() == schema.Padding.SAME else "VALID",
            }
        elif op == "BATCH_MATMUL":
            parsed = schema.BatchMatMulOptions()
            parsed.Init(table.Bytes, table.Pos)
            options = {"adj_x": bool(parsed.AdjX()), "adj_y": bool(parsed.AdjY())}
        inputs = [operator.Inputs(k) for k in range(operator.InputsLength())]
        found.append({"op": op, "inputs": inputs, "output": operator.Outputs(0),
                      "options": options})
    return found


def _product_signature(operator, tensors):
    """Shapes, options, arithmetic and multiply-accumulates of one operator."""
    import numpy as np

    data, weights = tensors[operator["inputs"][0]], tensors[operator["inputs"][1]]
    output = tensors[operator["output"]]
    if data["dtype"] == np.int8:
        arithmetic = "int8"
    elif weights["dtype"] == np.int8:
        arithmetic = "dynamic_int8"
    else:
        arithmetic = "float32"
    out = [int(d) for d in output["shape"]]
    w = [int(d) for d in weights["shape"]]
    op = operator["op"]
    if op == "CONV_2D":  # filter (out, kh, kw, in)
        macs = int(np.prod(out)) * w[1] * w[2] * w[3]
    elif op == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, out)
        macs = int(np.prod(out)) * w[1] * w[2]
    elif op == "FULLY_CONNECTED":  # weights (out, in)
        macs = int(np.prod(out)) * w[1]
    else:
        a = [int(d) for d in data["shape"]]
        macs = int(np.prod(out)) * (a[-2] if operator["options"]["adj_x"] else a[-1])
    return {"op": op, "arithmetic": arithmetic, "input_shape": [int(d) for d in data["shape"]],
            "weight_shape": w, "output_shape": out, "options": operator["options"],
            "macs": macs}


def _single_product_file(entry):
    """A LiteRT file of the one operator `entry` describes, random weights."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    op, options = entry["op"], entry["options"]
    x_shape, w_shape = entry["input_shape"], entry["weight_shape"]
    inputs = [tf.TensorSpec(x_shape, tf.float32)]
    def random(*shape):
        return rng.standard_normal(shape).astype("float32")

    if op == "CONV_2D":  # LiteRT filter (out, kh, kw, in), TF's (kh, kw, in, out)
        kernel, bias = random(w_shape[1], w_shape[2], w_shape[3], w_shape[0]), random(w_shape[0])

        def product(x):
            return tf.nn.conv2d(x, kernel, options["strides"], options["padding"],
                                dilations=options["dilations"]) + bias
    elif op == "DEPTHWISE_CONV_2D":  # LiteRT (1, kh, kw, out), TF's (kh, kw, in, multiplier)
        channels = x_shape[-1]
        kernel = random(w_shape[1], w_shape[2], channels, w_shape[3] // channels)
        bias = random(w_shape[3])

        def product(x):
            return tf.nn.depthwise_conv2d(x, kernel, [1, *options["strides"], 1],
                                          options["padding"],
                                          dilations=options["dilations"]) + bias
    elif op == "FULLY_CONNECTED":  # LiteRT weights (out, in)
        kernel, bias = random(w_shape[1], w_shape[0]), random(w_shape[0])
        rows = int(np.prod(x_shape[:-1]))

        def product(x):
            return tf.matmul(tf.reshape(x, (rows, w_shape[1])), kernel) + bias
    else:
        inputs.append(tf.TensorSpec(w_shape, tf.float32))

        def product(x, y):
            return tf.linalg.matmul(x, y, adjoint_a=options["adj_x"], adjoint_b=options["adj_y"])

    function = tf.function(product, input_signature=inputs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    if entry["arithmetic"] != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if entry["arithmetic"] == "int8":
        converter.representative_dataset = lambda: (
            [random(*spec.shape) for spec in inputs] for _ in range(4)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _check_single_product_file(path, entry):
    """The one-operator file holds `entry`'s operator with its arithmetic and
    output size (else the profile would time something else)."""
    import numpy as np
    Interpreter = _litert_interpreter("LiteRT profiling").Interpreter

    from keras_spiking_tf.edge_export.litert import litert_op_table

    with open(path, "rb") as file:
        table = litert_op_table(file.read())
    output_dtype = "int8" if entry["arithmetic"] == "int8" else "float32"
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    size = int(np.prod(interpreter.get_output_details()[0]["shape"]))
    if (entry["op"], output_dtype) not in table or size != int(np.prod(entry["output_shape"])):
        raise RuntimeError(
            f"Could not rebuild {entry['op']} ({entry['arithmetic']}, output "
            f"{entry['output_shape']}) as a one-operator LiteRT file: got {table} "
            f"with {size} outputs."
        )


def _median_invoke_seconds(path, num_threads, runs, input_shape=None):
    """Median seconds of `interpreter.invoke()` on random inputs."""
    import time

    import numpy as np
    Interpreter = _litert_interpreter("LiteRT profiling").Interpreter

    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    if input_shape is not None:
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, list(input_shape), strict=True)
    interpreter.allocate_tensors()
    _set_random_inputs(interpreter)
    for _ in range(3):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


MKL_PREFIXES = ("_MklNative", "_Mkl")


def _portable_op_type(kind):
    """An operator type as TensorFlow's graph names it on every CPU:
    TensorFlow's oneDNN build rewrites some operators on x86 CPUs with
    AVX-512 (`MatMul` runs as `_MklMatMul`, `_FusedConv2D` as
    `_MklNativeFusedConv2D`), and a profile should read the same on every
    machine."""
    for prefix in MKL_PREFIXES:
        if kind.startswith(prefix):
            rest = kind[len(prefix):]
            return "_" + rest if rest.startswith("Fused") else rest  # Grappler's own "_Fused..."
    return kind


def tensorflow_operator_profile(model, images, num_threads=None, runs=5, top=8):
    """TensorFlow's per-operator profile of `model(images)` (Keras on the
    TensorFlow backend, without XLA), by operator type.

    The model's call is traced once, its variables frozen to constants, and
    the graph run `runs` times in a TensorFlow session with a full trace
    (`RunOptions.FULL_TRACE`): the same executor and Grappler rewrites (e.g.
    `_FusedConv2D`) as `predict`'s `tf.function`, with the time of every
    operator recorded.

    Args:
        model: a Keras model (TensorFlow backend).
        images: one batch in the model's input space.
        num_threads: intra-op threads (`None`: TensorFlow's default).
        runs: traced calls (after one untraced warm-up).
        top: how many of the slowest nodes to list.

    Returns:
        As `onnx_operator_profile`: `by_op_type` (`{op_type, ms, share,
        nodes}`, slowest first, `ms` per call), `slowest_nodes`, `total_ms`
        (per call, summed over operators) and `runs`.
    """
    _check_profile_arguments(model=model, images=images, num_threads=num_threads, runs=runs,
                             top=top)
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    images = np.asarray(images, dtype="float32")
    function = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(
        function.get_concrete_function(tf.TensorSpec(images.shape, tf.float32))
    )
    input_name, output_name = frozen.inputs[0].name, frozen.outputs[0].name
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen.graph.as_graph_def(), name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=num_threads or 0,
                                      inter_op_parallelism_threads=1)
    per_node = collections.defaultdict(float)
    op_type = {}
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        session.run(output_name, {input_name: images})
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        for _ in range(runs):
            metadata = tf.compat.v1.RunMetadata()
            session.run(output_name, {input_name: images}, options=options,
                        run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    if " = " not in node.timeline_label:
                        continue  # the executor's own _SOURCE node
                    kind = _portable_op_type(
                        node.timeline_label.split(" = ", 1)[1].split("(", 1)[0])
                    if kind in ("_Arg", "_Retval", "NoOp", "Const"):
                        continue
                    op_type[node.node_name] = kind
                    per_node[node.node_name] += node.op_end_rel_micros - node.op_start_rel_micros
    if not per_node:
        raise RuntimeError("TensorFlow recorded no operator times for this model.")
    return _by_op_type(per_node, op_type, runs, top)


def _set_random_inputs(interpreter):
    import numpy as np

    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        if detail["dtype"] == np.int8:
            value = rng.integers(-128, 128, detail["shape"], dtype=np.int8)
        else:
            value = rng.standard_normal(detail["shape"]).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], value)
