"""Reading and writing preset directories safely (every model family's).

What this adds to KerasHub's own preset handling:

- *Reading*: every JSON file of a preset is parsed before KerasHub reads it,
  so a damaged file is an error naming file, line and column; a hub handle
  that cannot be fetched says why (offline mode, the network error, no such
  file); a weights file is checked against the SHA-256 that `metadata.json`
  records for it and for being readable HDF5 before it is loaded.
- *Writing*: `write_preset` saves through KerasHub's saver into a hidden
  staging directory, records each weights file's SHA-256 and the caller's
  metadata (training, evaluation, energy) in `metadata.json`, writes a model
  card (`README.md`), and renames the directory into place, so no reader
  ever sees half a preset.
"""

import hashlib
import json
import os
import shutil
import sys

import h5py
from keras_hub.src.utils.preset_utils import get_file

from keras_spiking_tf import validation
from keras_spiking_tf.atomic_directory import make_staging_directory
from keras_spiking_tf.atomic_directory import replace_directory
from keras_spiking_tf.atomic_directory import sweep_stale_staging

WEIGHT_FILES = ("model.weights.h5", "task.weights.h5")
HUB_SCHEMES = ("hf://", "kaggle://", "gs://")
PRESET_JSON_FILES = ("config.json", "task.json", "preprocessor.json", "metadata.json")
MODEL_CARD_FILE = "README.md"
# Exception class names (anywhere in an error's cause chain) that mean the
# hub could not be reached, as opposed to "no such file".
NETWORK_ERRORS = ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError",
                  "ConnectionError", "ConnectTimeout", "ReadTimeout", "TimeoutException",
                  "gaierror", "TimeoutError")


class DamagedPresetError(ValueError):
    """A preset file is damaged: not valid JSON, not readable HDF5, or not
    the file its recorded SHA-256 says."""


# --- reading ------------------------------------------------------------------


def looks_like_path(preset):
    """Whether `preset` is written as a path (a built-in name never is)."""
    return (
        os.sep in preset or "/" in preset or preset.startswith((".", "~"))
        or (os.altsep is not None and os.altsep in preset)
    )


def check_preset_directory(directory):
    """Raises a clear error unless `directory` is a preset directory."""
    if not os.path.exists(directory):
        raise FileNotFoundError(
            f"Preset directory '{directory}' does not exist. Check the path, or save a "
            "preset there with keras_spiking_tf.save_to_preset(model, directory)."
        )
    if not os.path.isdir(directory):
        raise NotADirectoryError(
            f"'{directory}' is a file, not a preset directory (a directory holding "
            "config.json, model.weights.h5, ...)."
        )
    if not os.path.exists(os.path.join(directory, "config.json")):
        raise FileNotFoundError(
            f"'{directory}' is not a preset directory: it has no config.json. "
            "Save one with keras_spiking_tf.save_to_preset(model, directory)."
        )


def check_preset_files(preset):
    """Fetches (for hub handles) and parses every JSON file of a preset, so
    that a network failure or a malformed file is reported as such before
    KerasHub reads them."""
    if preset.startswith(HUB_SCHEMES):
        check_hub_reachable(preset)
    read_preset_json(preset, "config.json")
    for filename in PRESET_JSON_FILES[1:]:
        read_preset_json(preset, filename, missing_ok=True)


def read_preset_json(preset, filename, missing_ok=False):
    """The parsed JSON file `filename` of a preset directory or hub handle.

    Raises:
        DamagedPresetError: the file is not valid JSON (the message names
            the file, line and column).
        FileNotFoundError: the file is absent (`{}` with `missing_ok`).
        OSError: a hub handle could not be fetched (the message says why:
            offline, a network error, no such repository).
    """
    preset = os.fspath(preset)
    try:
        path = get_file(preset, filename)
    except FileNotFoundError as error:
        unreachable = preset.startswith(HUB_SCHEMES) and network_cause(error) is not None
        if missing_ok and not (unreachable and not _hf_offline()):
            return {}  # offline, an optional file absent from the cache is absent
        if unreachable:
            raise hub_error(preset, error) from error
        raise
    except (OSError, ConnectionError) as error:
        raise hub_error(preset, error) from error
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise DamagedPresetError(
            f"'{path}' is not valid JSON: {error.msg} at line {error.lineno}, column "
            f"{error.colno}. The preset file is damaged; save or download the preset again."
        ) from None
    except UnicodeDecodeError as error:
        raise DamagedPresetError(
            f"'{path}' is not a text (UTF-8 JSON) file ({error.reason}). The preset file "
            "is damaged; save or download the preset again."
        ) from None


def read_preset_metadata(preset):
    """A preset's `metadata.json` (`{}` if it has none)."""
    return read_preset_json(preset, "metadata.json", missing_ok=True)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights_file(path):
    """Checks a weights file before it is loaded: against the SHA-256 that
    the `metadata.json` beside it records (when it records one), and for
    being a readable HDF5 file.

    Raises:
        DamagedPresetError: a checksum mismatch or an unreadable (e.g.
            truncated) file, naming it.
    """
    path = os.fspath(path)
    metadata_path = os.path.join(os.path.dirname(path), "metadata.json")
    expected = None
    if os.path.exists(metadata_path):
        with open(metadata_path, encoding="utf-8") as file:
            try:
                expected = json.load(file).get("weights_sha256", {}).get(os.path.basename(path))
            except json.JSONDecodeError:
                expected = None  # reported by check_preset_files when loading a preset
    if expected is not None and sha256_of(path) != expected:
        raise DamagedPresetError(
            f"Weights file '{path}' does not match its recorded SHA-256 ({expected}): it "
            "is corrupt or was modified. Reinstall the package or download the preset "
            "again."
        )
    try:
        with h5py.File(path, "r"):
            pass
    except OSError as error:
        raise DamagedPresetError(
            f"Weights file '{path}' is not a readable HDF5 file ({error}); it is probably "
            "truncated or corrupt. Save or download the preset again."
        ) from error


def _causes(error):
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def network_cause(error):
    """The first error in `error`'s chain that means "hub unreachable"."""
    for cause in _causes(error):
        if any(cls.__name__ in NETWORK_ERRORS for cls in type(cause).__mro__):
            return cause
    return None


HUB_HOSTS = {"kaggle://": "www.kaggle.com", "gs://": "storage.googleapis.com"}
NAME_LOOKUP_SECONDS = 5.0


def hub_host(preset):
    """The host name a hub handle is fetched from (`hf://`: the Hugging
    Face endpoint, `HF_ENDPOINT` if set)."""
    if preset.startswith("hf://"):
        from urllib.parse import urlparse

        from huggingface_hub import constants

        return urlparse(constants.ENDPOINT).hostname
    return HUB_HOSTS[next(scheme for scheme in HUB_HOSTS if preset.startswith(scheme))]


def host_resolves(host, timeout=NAME_LOOKUP_SECONDS):
    """Whether one name lookup of `host` succeeds within `timeout` seconds."""
    import concurrent.futures
    import socket

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    lookup = pool.submit(socket.getaddrinfo, host, 443)
    try:
        lookup.result(timeout=timeout)
        return True
    except (OSError, concurrent.futures.TimeoutError):
        return False
    finally:
        pool.shutdown(wait=False)


def check_hub_reachable(preset):
    """Fails at once, rather than after the hub clients' retries, when a hub
    handle's host cannot be looked up (no network). A Hugging Face preset in
    the local cache is then loaded from the cache: offline mode is switched
    on for this process, with a notice.

    Raises:
        OSError: the hub cannot be reached and no cached copy exists.
    """
    if preset.startswith("hf://") and _hf_offline():
        return  # offline already: the cache answers at once
    host = hub_host(preset)
    if host_resolves(host):
        return
    if preset.startswith("hf://") and _hf_cached(preset):
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
        print(f"Note: the Hugging Face Hub ({host}) cannot be reached; loading '{preset}' "
              "from the local cache (offline mode for this process).", file=sys.stderr)
        return
    raise OSError(
        f"Could not fetch preset '{preset}': the hub could not be reached (the name of its "
        f"host {host} could not be looked up: no network?)"
        + (" and the preset is not in the local cache" if preset.startswith("hf://") else "")
        + ". Check your connection and proxy settings, or pass a local preset directory."
    )


def _hf_cached(preset):
    """Whether the `config.json` of `hf://` handle `preset` is in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    repo_id = preset[len("hf://"):].split("@")[0].strip("/")
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _hf_offline():
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def hub_error(preset, error):
    """An `OSError` saying why hub handle `preset` could not be fetched."""
    if not preset.startswith(HUB_SCHEMES):
        return error
    if preset.startswith("hf://") and _hf_offline():
        return OSError(
            f"Could not fetch preset '{preset}': the Hugging Face Hub is in offline mode "
            "(HF_HUB_OFFLINE=1) and the preset is not in the local cache. Go online once "
            "(unset HF_HUB_OFFLINE) to download it, or pass a local preset directory."
        )
    if network_cause(error) is not None:
        root = _causes(error)[-1]
        return OSError(
            f"Could not fetch preset '{preset}': the hub could not be reached (network "
            f"error: {type(root).__name__}: {root}). Check your connection and proxy "
            "settings, or pass a local preset directory."
        )
    return OSError(
        f"Could not fetch preset '{preset}': {error}. Check the handle; offline, "
        "download the preset directory beforehand and pass its local path."
    )


# --- writing ------------------------------------------------------------------


def write_preset(save, preset_dir, metadata=None, model_card=None):
    """Writes a preset directory atomically.

    Args:
        save: `save(staging_dir)` writes KerasHub's preset files there.
        preset_dir: the directory to (re)place.
        metadata: extra entries merged into `metadata.json`.
        model_card: the text of `README.md` (`None`: none written).

    Returns:
        The absolute path of `preset_dir`.
    """
    validation.check_output_path("preset_dir", preset_dir, kind="directory")
    if metadata is not None and not isinstance(metadata, dict):
        raise validation.invalid("metadata", metadata, "a dict or None", error=TypeError)
    validation.check_string("model_card", model_card, allow_none=True, allow_empty=True)
    preset_dir = os.path.abspath(os.fspath(preset_dir))
    parent = os.path.dirname(preset_dir)
    sweep_stale_staging(parent, [".preset", ".retired"])
    staging = make_staging_directory(parent, ".preset")
    try:
        save(staging)
        metadata_path = os.path.join(staging, "metadata.json")
        saved = {}
        if os.path.exists(metadata_path):
            with open(metadata_path, encoding="utf-8") as file:
                saved = json.load(file)
        saved.update(metadata or {})
        saved["weights_sha256"] = {
            name: sha256_of(os.path.join(staging, name))
            for name in WEIGHT_FILES
            if os.path.exists(os.path.join(staging, name))
        }
        with open(metadata_path, "w", encoding="utf-8") as file:
            json.dump(saved, file, indent=4)
        if model_card is not None:
            with open(os.path.join(staging, MODEL_CARD_FILE), "w", encoding="utf-8") as file:
                file.write(model_card)
        replace_directory(staging, preset_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return preset_dir


# --- publishing ---------------------------------------------------------------


def upload_preset(uri, preset_dir):
    """Publishes a saved preset directory to a model hub, model card included.

    The preset is verified first (every JSON file parses, every weights file
    matches its recorded SHA-256). `hf://[org/]name` uploads the directory
    as it is to a Hugging Face model repository, created if needed, so the
    repository's page is the preset's own `README.md` (KerasHub's
    `keras_hub.upload_preset` would write a generic card over it on a first
    upload); `kaggle://org/model/keras/variant` goes through
    `keras_hub.upload_preset`.

    Example:

    ```python
    model.save_to_preset("my_preset")
    keras_spiking_tf.upload_preset("hf://me/my_preset", "my_preset")
    keras_spiking_tf.from_preset("hf://me/my_preset")
    ```
    """
    validation.check_string("uri", uri)
    if not uri.startswith(("hf://", "kaggle://")) or uri in ("hf://", "kaggle://"):
        raise ValueError(f"Unknown hub URI {validation.describe(uri)}: `uri` must be "
                         "hf://[org/]name or kaggle://org/model/keras/variant.")
    preset_dir = validation.check_path("preset_dir", preset_dir, kind="directory")
    check_preset_directory(preset_dir)
    check_preset_files(preset_dir)
    for name in WEIGHT_FILES:
        if os.path.exists(os.path.join(preset_dir, name)):
            verify_weights_file(os.path.join(preset_dir, name))
    if uri.startswith("hf://"):
        import huggingface_hub

        repo = huggingface_hub.create_repo(repo_id=uri[len("hf://"):], exist_ok=True)
        huggingface_hub.upload_folder(repo_id=repo.repo_id, folder_path=preset_dir)
        return repo.repo_id
    import keras_hub

    return keras_hub.upload_preset(uri, preset_dir)
