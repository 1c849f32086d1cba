"""A causal LM adapted by a fine-tuning method: training examples, token log-probabilities, generation.

Shared by FineTuneGenerator (supervised fine-tuning) and PreferenceTuner (the
RL and DPO steps), so that both train, score and generate with one definition.
"""

import numpy as np

#: methods that apply to a causal LM here; "head" trains a classifier on
#: pooled features and "prefix" hooks into attention in a way generation with a
#: key/value cache was not checked against.
GENERATIVE_METHODS = ("lora", "full", "prompt", "adapter")

IGNORE = -100  # label of a position that is not scored (torch cross_entropy's ignore_index)


def check_generative_method(method):
    if method.name not in GENERATIVE_METHODS:
        raise ValueError(
            f"method={method.name!r} does not apply to generation; use one of {list(GENERATIVE_METHODS)} "
            f"or their objects (LoRA(...), FullFineTuning(), PromptTuning(...), BottleneckAdapter(...))."
        )


def build_example(prompt_ids, target_ids):
    """``(input_ids, labels)`` of one training example: labels are ``-100`` over the prompt.

    The model is trained to produce the target after the prompt; the prompt's
    own tokens are context only and never scored.
    """
    ids = list(prompt_ids) + list(target_ids)
    labels = [IGNORE] * len(prompt_ids) + list(target_ids)
    return ids, labels


def pad_examples(ids, labels, rows, pad_id, device, *, side="right"):
    """Padded ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` on padding) for ``rows``."""
    import torch

    from ._tokens import pad_batch

    input_ids, mask = pad_batch(ids, rows, pad_id, device, side=side)
    padded = np.full(tuple(input_ids.shape), IGNORE, dtype=np.int64)
    width = padded.shape[1]
    for row, i in enumerate(rows):
        n = len(labels[i])
        if side == "right":
            padded[row, :n] = labels[i]
        else:
            padded[row, width - n :] = labels[i]
    return input_ids, mask, torch.from_numpy(padded).to(device)


class CausalNetwork:
    """Factory of the torch module; kept import-light (torch is imported on first use)."""

    @staticmethod
    def build(method, lm):
        """The adapted LM: ``method`` applied to a frozen private copy of ``lm`` (a causal LM)."""
        return _module()(method, lm)


def _module():
    import copy

    import torch
    from torch import nn

    class _CausalNetwork(nn.Module):
        """A causal LM adapted by a method; ``forward`` gives the logits of the input positions."""

        def __init__(self, method, lm):
            super().__init__()
            lm = copy.deepcopy(lm)  # the loaded model is shared by every fit
            for p in lm.parameters():
                p.requires_grad_(False)
            # The methods build an encoder around the model they adapt; a causal
            # LM keeps its output layer, so only the adapted model is kept.
            encoder = method.build(lm)
            self.model = encoder.model
            self.n_virtual = int(method.extra_positions())

        def _embeds(self, input_ids, attention_mask):
            """For prompt tuning: the virtual tokens' embeddings before the input's, and the mask."""
            batch = input_ids.shape[0]
            prompts = self.model.get_prompt(batch_size=batch).to(self.model.get_input_embeddings().weight.dtype)
            words = self.model.get_input_embeddings()(input_ids)
            ones = torch.ones(batch, self.n_virtual, dtype=attention_mask.dtype, device=attention_mask.device)
            return torch.cat([prompts, words], dim=1), torch.cat([ones, attention_mask], dim=1)

        def _base(self):
            return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

        def forward(self, input_ids, attention_mask):
            if self.n_virtual:
                embeds, mask = self._embeds(input_ids, attention_mask)
                positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
                out = self._base()(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
                return out.logits[:, self.n_virtual :]
            positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
            return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).logits

        def generate(self, input_ids, attention_mask, **kwargs):
            """Only the new tokens, for left-padded ``input_ids``."""
            if self.n_virtual:
                embeds, mask = self._embeds(input_ids, attention_mask)
                # Given embeddings only, generate returns the new tokens alone.
                return self._base().generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            return out[:, input_ids.shape[1] :]

    return _CausalNetwork


def token_logprobs(network, input_ids, attention_mask, labels):
    """Log-probability of each scored token (0 elsewhere), shape ``(batch, width - 1)``, and the mask."""
    import torch

    logits = network(input_ids, attention_mask)[:, :-1].float()
    targets = labels[:, 1:]
    scored = targets != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * scored, scored


def sequence_loss(network, input_ids, attention_mask, labels):
    """Mean cross-entropy over the scored (target) tokens of the batch."""
    import torch

    logits = network(input_ids, attention_mask)[:, :-1].float()
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )
