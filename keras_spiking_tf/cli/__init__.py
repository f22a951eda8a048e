"""The command-line tools, installed as `kst-*` programs.

| program           | module                      | checkout equivalent                   |
|-------------------|-----------------------------|---------------------------------------|
| `kst-train`       | `cli/train.py`              | `python tools/train.py`               |
| `kst-export`      | `cli/export.py`             | `python tools/export.py`              |
| `kst-analyze`     | `cli/analyze.py`            | `python tools/analyze.py`             |
| `kst-convert-sdt` | `cli/convert_sdt_checkpoint.py` | `python tools/convert_sdt_checkpoint.py` |

Each module defines its absl flags and a `main()` that runs the program
through `tool.run`. `startup.py` keeps TensorFlow's native start-up lines off
the console; it is imported by the package's `__init__` before TensorFlow
loads. This package imports nothing heavy.
"""
