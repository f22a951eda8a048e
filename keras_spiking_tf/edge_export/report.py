"""What `export` returns: one record of what was written and how it checks out."""

import collections.abc
import dataclasses


@dataclasses.dataclass
class ExportReport(collections.abc.Mapping):
    """The report of one export; also readable as a mapping
    (`report["top1_agreement"]`, `dict(report)`, `json.dumps(dict(report))`).

    Attributes:
        format, quantization, optimize_graph, output_kind, include_preprocessing, int8_io:
            what was asked for.
        path: the written file or directory; `file_bytes` its size.
        input: the graph input's `name`, `shape` and `dtype`;
            `output_dtype` the output's.
        ops: operator names (LiteRT) or types (ONNX); `None` for SavedModel.
        op_counts: LiteRT: `{operator: {output dtype: count}}`.
        flex_ops: non-builtin LiteRT operators (always empty: refused).
        convert_seconds, verify_seconds: how long each took.
        num_samples: verification images; `top1_agreement` with Keras;
            `max_abs_logit_diff` and `mean_abs_logit_diff` (a probability
            difference when `output_kind="probabilities"`);
            `num_samples_over_rounding`: samples whose largest difference
            exceeds `ROUNDING_TOLERANCE` (some spike differs);
            `accuracy_keras`, `accuracy_exported`, `accuracy_change` (with
            labels); `batch_sizes_checked`. `None` without verification.
        batch_size: how many images went through a model at once
            (preprocessing, verification, int8 calibration).
        arena_bytes, arena_head_bytes, arena_tail_bytes: `litert_micro`
            only (`None` otherwise, or without verification): the tensor
            arena the TFLM interpreter used (`arena_size` to give it), its
            head (planned activations) and tail (persistent per-operator
            data); `arena_peak_tensors`: the largest tensors live where the
            activations peak (`litert_micro.peak_tensors`);
            `fits_1mb_flash_256kb_ram`: file <= 1 MiB and arena <= 256 KiB.

    Example:

    ```python
    report = export(model, "digits.tflite", verification_images=x, labels=y)
    report.top1_agreement, report["accuracy_exported"]
    ```
    """

    format: str
    quantization: str | None
    optimize_graph: bool
    output_kind: str
    include_preprocessing: bool
    int8_io: bool
    path: str
    file_bytes: int
    input: dict
    output_dtype: str
    ops: list | None
    op_counts: dict | None
    flex_ops: list
    convert_seconds: float
    verify_seconds: float | None = None
    num_samples: int | None = None
    top1_agreement: float | None = None
    max_abs_logit_diff: float | None = None
    mean_abs_logit_diff: float | None = None
    num_samples_over_rounding: int | None = None
    accuracy_keras: float | None = None
    accuracy_exported: float | None = None
    accuracy_change: float | None = None
    batch_sizes_checked: list | None = None
    batch_size: int | None = None
    arena_bytes: int | None = None
    arena_head_bytes: int | None = None
    arena_tail_bytes: int | None = None
    arena_peak_tensors: list | None = None
    fits_1mb_flash_256kb_ram: bool | None = None

    def __getitem__(self, key):
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self.__dataclass_fields__)

    def __len__(self):
        return len(self.__dataclass_fields__)
