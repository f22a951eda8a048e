"""Where an exported file's time goes: per-operator profiles in each runtime.

- `litert_delegation(path)`: how the LiteRT CPU delegate (XNNPACK) takes
  the graph. The operators it does not take run on LiteRT's reference
  kernels, one at a time, and split the graph into several delegated
  partitions (each boundary costs a copy and a synchronisation). The LiteRT
  Python interpreter has no per-operator timer (the op profiler is in the
  C++ `benchmark_model` tool only), so this is LiteRT's profile here: the
  partitions, the operators left outside them, and the QUANTIZE /
  DEQUANTIZE operators a full-int8 file inserts between int8 and float
  islands.
- `onnx_operator_profile(path, images)`: ONNX Runtime's own profiler
  (`SessionOptions.enable_profiling`), total time per operator type of the
  graph ORT actually runs (after its fusions, e.g. `FusedMatMul`, `FusedConv`).

Example:

```python
delegation = litert_delegation("model.tflite")
delegation["partitions"], delegation["not_delegated"]   # 1, {}
profile = onnx_operator_profile("model.onnx", images[:1])
profile["by_op_type"][0]     # {"op_type": "MatMul", "ms": ..., "share": ...}
```
"""

import collections
import json
import os
import tempfile

from keras_spiking_tf.edge_export.litert import litert_op_counts


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
    from ai_edge_litert.interpreter import Interpreter

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
