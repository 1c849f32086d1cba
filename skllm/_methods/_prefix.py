"""Prefix tuning through peft's ``PrefixTuningConfig``.

peft passes the prefixes to the model as cached keys and values. skllm adds two things
(``PrefixValues`` and ``PrefixTunedEncoder`` in ``_encoders.py``): its own prefix values,
which peft reads in place of its prefix embedding, so that the reparametrisation MLP can
be dropped after training and stored parameters keep their names; and position ids that
keep the text at the positions it has without a prefix.

Checked (tests/test_prefix.py, tests/test_legacy.py and the prefix tests of test_finetune,
test_methods_extra and test_common) with transformers 5.0.0 and 5.25.0, each with peft
0.19.0 and 0.21.2, on BERT (tiny, MiniLM) and Llama (tiny; also with grouped-query
attention, outside the tests): a padded text gives the outputs it gives alone, the prefix
changes them, training changes the prefix only, and the same prefixes give the outputs
skllm's own attention hook gave before peft was used (largest difference 0), so models
saved then predict the same.

Not for generation (``supports_generation = False``): greedy generation with a causal LM
through peft's prefix tuning was wrong with every release checked. With transformers
5.0.0 (peft 0.18.0, 0.19.0 and 0.21.2) ``generate`` fails: "The expanded size of the
tensor (27) must match the existing size (49)", the attention mask against the cache.
With transformers 5.25.0 (peft 0.19.0 and 0.21.2) it runs but ignores the prefix:
transformers passes its own ``cache`` and drops peft's deprecated ``past_key_values``
("Both `past_key_values` and `cache` are set ... ignoring deprecated `past_key_values`"),
so it generates what the untuned model generates, which differs from greedy decoding by
forward passes and from generation without the key/value cache.
"""

import warnings

from .._architecture import first_position
from ..exceptions import MissingDependencyError
from ._base import FineTuningMethod, check_bool, check_int

#: peft releases that place the text at its own positions (peft 0.18 ignores position ids
#: with prefix tuning, so the text would follow the prefix: see PrefixTunedEncoder)
PEFT_REQUIREMENT = ">=0.19"


def _peft():
    """peft's prefix tuning, or an ImportError naming the release it needs."""
    try:
        import peft
        from peft import PrefixTuningConfig, TaskType, get_peft_model
    except ImportError as exc:
        raise MissingDependencyError("peft", "Prefix tuning", f"pip install 'peft{PEFT_REQUIREMENT}'") from exc
    major, minor = (int(part) for part in peft.__version__.split(".")[:2])
    if (major, minor) < (0, 19):
        raise ImportError(
            f"Prefix tuning needs peft{PEFT_REQUIREMENT}, which keeps the text at its own positions behind "
            f"the prefix; peft {peft.__version__} is installed. Install a newer one: "
            f"pip install 'peft{PEFT_REQUIREMENT}'"
        )
    return PrefixTuningConfig, TaskType, get_peft_model


class PrefixTuning(FineTuningMethod):
    """Trainable key/value prefixes in every attention layer ("prefix"), via peft.

    The backbone is frozen; each layer attends to ``n_prefix_tokens`` extra
    keys and values learned for the task. With ``reparametrize=True`` (as in Li
    & Liang, 2021) the prefixes are produced by a small MLP from a shared
    embedding during training, which stabilises optimisation. The MLP serves
    training only: afterwards it is replaced by the prefixes it produces, which
    alone are stored (``trainable_state_``, the pickle) and used to predict.
    On MiniLM with 16 prefix tokens that is 6 layers x 2 (keys, values) x 384
    x 16 = 73,728 values instead of the MLP's 1.29 million.

    peft's ``PrefixTuningConfig`` feeds the prefixes to the model. The text keeps
    the positions it has without a prefix, so the prefix takes none of the
    model's positions. Not for generation with a causal LM: peft's prefix tuning
    does not generate correctly with the supported transformers releases.

    Parameters
    ----------
    n_prefix_tokens : int, default=16
        Number of prefix positions per layer.
    reparametrize : bool, default=True
        Produce the prefixes with an MLP (embedding -> tanh -> all layers)
        during training.
    projection_size : int, default=256
        Hidden size of that MLP.
    keep_projection : bool, default=False
        Keep the MLP after training: it is then stored and pickled, and
        ``warm_start`` trains on through it. By default a warm start trains the
        stored prefixes directly.
    backbone_dropout : bool, default=True
        Keep the frozen backbone's own dropout (MiniLM's 0.1 on its hidden states and
        attention) while training. ``False`` trains without it: fits of MiniLM ran 1.17x
        and 1.22x faster on Rotten Tomatoes and the 2016 debates, as accurate on the first
        but 0.016 less on the second (lower with each of seeds 0-2; docs/benchmarks.md), so
        it stays on by default. Prediction is the same either way.

    Examples
    --------
    >>> from skllm import FineTuneClassifier, PrefixTuning
    >>> sorted(PrefixTuning(n_prefix_tokens=4, projection_size=32).get_params().items())
    [('backbone_dropout', True), ('keep_projection', False), ('n_prefix_tokens', 4), ('projection_size', 32),
     ('reparametrize', True)]
    >>> X = ["a great film", "loved it", "awful", "so dull"] * 2
    >>> y = ["pos", "pos", "neg", "neg"] * 2
    >>> method = PrefixTuning(n_prefix_tokens=4, projection_size=32)
    >>> clf = FineTuneClassifier(method=method, epochs=1, max_length=16, random_state=0).fit(X, y)
    >>> clf.predict(["so dull"]).shape
    (1,)
    >>> clf.n_trainable_params_  # 4 tokens x 6 layers x 2 (keys, values) x 384, and the output layer
    19202
    """

    name = "prefix"
    default_learning_rate = 5e-3
    # One epoch over 1,000 Rotten Tomatoes texts (a 3-epoch fit less a 1-epoch fit, halved):
    # 9.3 s against 12.9 s for full fine-tuning (benchmarks/bench_finetune.py, docs/benchmarks.md).
    relative_cost = 0.72

    # Models saved before the MLP was dropped after training stored it.
    _value_before_added = (("keep_projection", True),)

    def __init__(
        self, n_prefix_tokens=16, reparametrize=True, projection_size=256, keep_projection=False, backbone_dropout=True
    ):
        self.n_prefix_tokens = n_prefix_tokens
        self.reparametrize = reparametrize
        self.projection_size = projection_size
        self.keep_projection = keep_projection
        self.backbone_dropout = backbone_dropout

    def validate(self):
        check_int(self.n_prefix_tokens, "n_prefix_tokens")
        check_int(self.projection_size, "projection_size")
        check_bool(self.reparametrize, "reparametrize")
        check_bool(self.keep_projection, "keep_projection")
        check_bool(self.backbone_dropout, "backbone_dropout")

    def build(self, backbone):
        import torch

        from ._encoders import PrefixTunedEncoder, PrefixValues

        PrefixTuningConfig, TaskType, get_peft_model = _peft()
        config = PrefixTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=self.n_prefix_tokens)
        try:
            # peft's own prefix embedding, replaced below, draws nothing from the seeded
            # random stream: the prefixes start as they did before peft was used.
            with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
                # peft calls a transformers API that transformers 5 deprecated.
                warnings.simplefilter("ignore", FutureWarning)
                model = get_peft_model(backbone, config)
        except ValueError as exc:
            said = str(exc).rstrip(".")
            raise ValueError(
                f"Prefix tuning cannot be applied to {type(backbone).__name__}: {said}. Use method='lora' or 'prompt'."
            ) from exc
        config = model.peft_config[model.active_adapter]  # peft fills in layers and widths from the model
        prefixes = PrefixValues(
            self.n_prefix_tokens,
            config.num_layers * 2 * config.token_dim,  # token_dim: key/value heads x head size
            backbone.config.hidden_size,
            self.reparametrize,
            self.projection_size,
        )
        model.prompt_encoder[model.active_adapter].embedding = prefixes
        first = first_position(backbone) if self.builds_as(2) else 0  # models saved before numbered from 0
        return _check_used(PrefixTunedEncoder(model, prefixes, self.n_prefix_tokens, first), backbone)

    def compact(self, network):
        """The prefixes the MLP produces, as a plain trainable parameter in place of the MLP."""
        if self.reparametrize and not self.keep_projection:
            network.encoder.extra.drop_projection()
        return network


def _check_used(encoder, backbone):
    """``encoder``, once two texts (one padded) ran through it and their outputs changed with the prefixes.

    peft hands the prefixes over as cached keys and values: a model that takes no cache
    (MPNet, ALBERT) drops them without a word, and its prefixes would train nothing; one that
    lays its attention out otherwise (DeBERTa-v2, ModernBERT) fails inside its attention.
    """
    import torch

    device = next(backbone.parameters()).device
    ids = torch.ones(2, 4, dtype=torch.long, device=device)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], device=device)
    name = type(backbone).__name__
    prefixes, was_training = encoder.extra.embedding, encoder.training
    try:
        with torch.no_grad():
            before, kept = encoder.eval()(ids, mask), prefixes.detach().clone()
            prefixes.add_(1.0)
            after = encoder(ids, mask)
            prefixes.copy_(kept)
    except Exception as exc:  # whatever the model raises, the cause is the prefixes peft feeds it
        raise ValueError(
            f"Prefix tuning cannot be applied to {name}: it does not run with the prefixes that peft feeds it as "
            f"cached keys and values ({type(exc).__name__}: {str(exc)[:200]}). Use method='lora' or 'prompt'."
        ) from exc
    finally:
        encoder.train(was_training)
    if torch.equal(before, after):
        raise ValueError(
            f"Prefix tuning cannot be applied to {name}: it ignores the prefixes that peft feeds it as cached keys "
            f"and values (it takes no key/value cache), so they would train nothing. Use method='lora' or 'prompt'."
        )
    return encoder
