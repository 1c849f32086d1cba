"""What every fine-tuning method provides: the contract the estimators call."""

import re

from sklearn.base import BaseEstimator

from .._architecture import output_width
from .._validation import check_bool, check_choice, check_int, check_number  # noqa: F401  (for the methods)


def check_target_modules(value, *, regex_in_list):
    """Raise a ``ValueError`` naming ``target_modules`` unless it is None, a pattern, or a list of names or patterns.

    A str is a regular expression (for peft too); with ``regex_in_list`` so is each entry of
    a list (the adapters'), else an entry is a module name or the end of one (peft's).
    """
    if value is None:
        return
    if not isinstance(value, (tuple, list, str)):
        raise ValueError(f"target_modules must be None, a str or a tuple of str, got {value!r}.")
    entries = [value] if isinstance(value, str) else list(value)
    bad = [v for v in entries if not isinstance(v, str) or not v]
    if bad or not entries:
        raise ValueError(
            f"target_modules must be None, a str or a non-empty tuple of non-empty str (module names), got {value!r}."
        )
    for entry in entries if regex_in_list or isinstance(value, str) else ():
        try:
            re.compile(entry)
        except re.error as exc:
            raise ValueError(f"target_modules entry {entry!r} is not a regular expression: {exc}.") from None


#: fewest positions a method must leave for the text itself
MIN_TEXT_POSITIONS = 8


class FineTuningMethod(BaseEstimator):
    """A way of adapting a backbone: a small object holding its own hyperparameters.

    Being a scikit-learn estimator, it is cloned with the model that uses it,
    and ``GridSearchCV`` tunes its parameters as ``method__<name>``. The method
    object keeps no fitted state: the estimator stores what training learned.

    :class:`~skllm.FineTuneClassifier` and :class:`~skllm.FineTuneRegressor`
    call only the methods below, in this order. A subclass that trains through
    the backbone's hidden states (the default) implements ``build``; one that
    works otherwise (:class:`~skllm.HeadTuning`) overrides ``prepare``,
    ``inputs`` and ``build_network``.

    1. ``validate()``: raise ``ValueError`` naming a bad hyperparameter.
    2. ``extra_positions()``: positions the method adds in front of the input;
       ``max_length`` is capped at the model's positions less this number
       (``text_positions(n_positions)``, which refuses a method that leaves
       the text too few).
    3. ``prepare(estimator)``: fitted attributes (a dict, whose names are in
       ``fitted_attributes``) that ``inputs`` needs, made once per ``fit``.
    4. ``inputs(estimator, texts, warn=True)``: the network's inputs for
       ``texts``, an object with ``len()``, ``lengths()``, ``subset(rows)`` and
       ``tensors(rows, device)`` (token ids by default).
    5. ``build_network(backbone, n_outputs, pooling)``: a ``torch.nn.Module``
       that maps ``*inputs.tensors(rows, device)`` to outputs of shape
       ``(len(rows), n_outputs)``, with exactly the parameters it trains set to
       ``requires_grad=True``. It is called again, with the same arguments,
       to rebuild an unpickled model before its trained parameters are put back.
    6. ``compact(network)``: after training, the form whose trainable parameters
       are stored in ``trainable_state_`` (e.g. prefixes without the MLP that
       produced them). Also applied to a rebuilt network before its stored
       parameters are loaded. Default: the network unchanged.
    7. ``for_inference(network)``: the form used to predict (e.g. LoRA merged
       into the weights), made after the parameters are stored; never trained
       further. Default: the network unchanged.

    The default ``build_network`` gives ``build(backbone)`` a private copy of
    the backbone (when ``modifies_backbone``, :func:`frozen_copy`: its frozen
    weights are the loaded model's, what ``build`` makes trainable becomes the
    copy's own) with every parameter frozen; the
    encoder it returns maps ``(input_ids, attention_mask)`` to the last hidden
    states, which are pooled and fed to a linear output layer.

    Examples
    --------
    >>> from skllm import FineTuningMethod, LoRA
    >>> from skllm._methods import METHODS
    >>> sorted(METHODS)
    ['adapter', 'full', 'head', 'lora', 'partial', 'prefix', 'prompt']
    >>> isinstance(LoRA(), FineTuningMethod), LoRA.name, LoRA.default_learning_rate
    (True, 'lora', 0.001)
    """

    #: name accepted by ``FineTuneClassifier(method=...)``, the key in ``METHODS``
    name = ""
    #: AdamW learning rate used when ``learning_rate=None``
    default_learning_rate = 1e-4
    #: passes over the training data when ``epochs=None``
    default_epochs = 3
    #: True when ``build`` changes the backbone in place (it then gets a copy)
    modifies_backbone = True
    #: training time per text relative to full fine-tuning (1.0), measured with the default
    #: encoder on the CPU; the comparison's planner reads it
    relative_cost = 1.0
    #: True when training runs on features computed once by the frozen backbone and cached
    #: (the embedding cache of :class:`~skllm.TransformerEmbedder`), not on token ids
    caches_features = False
    #: True when the method applies to a causal LM that generates text
    #: (:class:`~skllm.FineTuneGenerator`, :class:`~skllm.PreferenceTuner`)
    supports_generation = False
    #: the parameter that sets ``extra_positions()``, named by the error when it is too large
    extra_positions_parameter = None
    #: names of the estimator's fitted attributes that ``prepare`` returns
    fitted_attributes = ()
    #: False when the backbone's own dropout (its ``nn.Dropout`` layers) is off while training
    #: (a parameter of every method that trains a copy of the backbone, ``modifies_backbone``)
    backbone_dropout = True
    #: ``(name, value)`` pairs for parameters added after models were first saved: the value
    #: that gives what a method unpickled without them did (others take their default)
    _value_before_added = ()
    #: How networks are built. 2: prefix tuning numbers a RoBERTa-like model's text from
    #: ``padding_idx + 1``, and partial fine-tuning keeps its blocks' layer types and DeBERTa-v2's
    #: first-block convolution as the whole model has them. A method pickled before holds none and
    #: builds as 1 (as then), so that the models saved then predict as they did.
    BUILD = 2

    @property
    def build_version(self):
        """The :data:`BUILD` this method builds its networks as: its own, or the one it was pickled with."""
        return getattr(self, "_build", self.BUILD)

    def builds_as(self, version):
        """Whether this method builds its networks as :data:`BUILD` ``version`` does (or later)."""
        return self.build_version >= version

    def __getstate__(self):
        return {**super().__getstate__(), "_build": self.build_version}

    def __setstate__(self, state):
        # get_params, repr and clone need every parameter, and a method pickled
        # before one was added lacks it.
        import inspect

        state, before = dict(state), dict(self._value_before_added)
        state.setdefault("_build", 1)
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if name != "self" and name not in state and parameter.default is not parameter.empty:
                state[name] = before.get(name, parameter.default)
        super().__setstate__(state)

    def validate(self):
        """Raise ``ValueError`` naming a bad hyperparameter."""

    def extra_positions(self):
        """Positions the method adds in front of the input (prompt tokens)."""
        return 0

    def text_positions(self, n_positions):
        """Positions left for the text in a model of ``n_positions``, after ``extra_positions()``.

        Raises a ``ValueError`` naming the method's parameters when fewer than
        ``MIN_TEXT_POSITIONS`` are left.
        """
        extra, n_positions = int(self.extra_positions()), int(n_positions)
        left = n_positions - extra
        if left < MIN_TEXT_POSITIONS:
            param = self.extra_positions_parameter
            what = f"{type(self).__name__}({param}={extra})" if param else repr(self)
            fix = f"{param} <= {n_positions - MIN_TEXT_POSITIONS}" if param else "a method that adds fewer"
            raise ValueError(
                f"{what} puts {extra} positions before the text, but the model accepts {n_positions} positions in "
                f"all, which leaves {max(left, 0)} for the text; use {fix} (the text needs {MIN_TEXT_POSITIONS} "
                f"positions at least)."
            )
        return left

    def prepare(self, estimator):
        """Fitted attributes that ``inputs`` needs; token ids need none."""
        return {}

    def inputs(self, estimator, texts, *, warn=True):
        """Token ids of ``texts``, truncated to ``estimator.max_length_`` (with a warning if ``warn``)."""
        import numpy as np

        from .._tokens import pad_token_id, tokenize, truncation_warning, unknown_tokens_warning
        from ._inputs import TokenInputs

        ids, n_tokens = tokenize(estimator.tokenizer_, texts, estimator.max_length_)
        if warn:
            n_cut = int((np.asarray(n_tokens) > estimator.max_length_).sum())
            truncation_warning(n_cut, len(texts), estimator.max_length_, 4)
            unknown_tokens_warning(estimator.tokenizer_, texts, ids)
        return TokenInputs(ids, pad_token_id(estimator.tokenizer_))

    def build_network(self, backbone, n_outputs, pooling):
        """Encoder from ``build``, ``pooling`` of its hidden states, and a linear output layer."""
        from ._encoders import MLP, Network

        head = MLP(output_width(backbone.config), n_outputs, (), 0.1)
        return Network(self.adapted(backbone), head, pooling)

    def adapted(self, backbone):
        """``build`` on a frozen copy of ``backbone`` (:func:`frozen_copy`) when ``modifies_backbone``, else on it.

        The copy loses its own dropout unless ``backbone_dropout``; what ``build`` makes
        trainable gets its own values. ``FineTuneGenerator``'s network adapts its causal LM so too.
        """
        from .._dropout import without_dropout

        loaded = backbone
        if self.modifies_backbone:
            # The loaded backbone is shared by every fit; it must stay as it is.
            backbone = frozen_copy(backbone)
            if not self.backbone_dropout:
                without_dropout(backbone)  # its own layers only: the method adds its own after
        for p in backbone.parameters():
            p.requires_grad_(False)
        encoder = self.build(backbone)
        if self.modifies_backbone:
            own_trained_weights(encoder, loaded)
        return encoder

    def build(self, backbone):
        """Return the encoder built on ``backbone`` (frozen; a copy the method may modify)."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(backbone) or build_network(...).")

    def compact(self, network):
        """The trained network in the form whose trainable parameters are stored (default: as is)."""
        return network

    def for_inference(self, network):
        """The network in the form used for prediction (default: as is)."""
        return network


def frozen_copy(model, shares=None):
    """A copy of ``model`` for a method to adapt, every parameter frozen, sharing the weights' memory.

    ``shares(parameter)`` chooses the parameters shared (default: all); the others are
    copied, as the frozen reference of a policy needs the weights the policy trains.

    The modules, buffers and parameter objects are the copy's own, so a method may
    replace or wrap modules and unfreeze parameters without touching ``model``, which
    the registry shares with every estimator of the process. The parameters hold
    ``model``'s tensors, though, not copies of them (a LoRA fit of SmolLM2-135M peaked
    539 MB lower, docs/benchmarks.md): whatever the method then trains is given its own
    (:func:`own_trained_weights`), and nothing may write into a frozen one in place
    (LoRA's merge gives the layers it merges their own first, ``LoRA.for_inference``).
    """
    import copy

    import torch

    shared = [p for p in model.parameters() if shares is None or shares(p)]
    memo = {id(p): torch.nn.Parameter(p.detach(), requires_grad=False) for p in shared}
    copied = copy.deepcopy(model, memo)  # a weight tied to two modules stays one parameter
    for p in copied.parameters():
        p.requires_grad_(False)
    return copied


def own_trained_weights(model, loaded):
    """Give every parameter of ``model`` that trains and holds a tensor of ``loaded`` a copy of its own."""
    import torch

    shared = {p.untyped_storage().data_ptr() for p in loaded.parameters()}
    own = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None and p.requires_grad and p.untyped_storage().data_ptr() in shared:
                if id(p) not in own:  # a tied weight: one copy for its modules
                    own[id(p)] = torch.nn.Parameter(p.detach().clone(), requires_grad=True)
                module._parameters[name] = own[id(p)]
