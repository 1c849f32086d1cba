"""Prompts that start alike: their shared leading tokens computed once, their key/value cache reused.

Used by the prompting classifiers' scoring (:meth:`PromptClassifier._score_prompts`): the chat
preamble, fixed demonstrations and the first demonstrations that texts share run through the
model once, and each prompt's rest from their cache.
"""

import itertools

# Below this many tokens in common, sharing the prompts' start saves less than it costs.
MIN_SHARED_PREFIX = 16


class PrefixNode:
    """Tokens ``[start, end)`` of the prompt ``first``, computed once after those of node ``parent``.

    ``leaves``: the prompts whose tokens from ``end`` on are scored from this node's cache.
    """

    __slots__ = ("end", "first", "leaves", "parent", "start")

    def __init__(self, parent, start, end, first):
        self.parent, self.start, self.end, self.first, self.leaves = parent, start, end, first, []


def prefix_tree(prompts, min_shared=MIN_SHARED_PREFIX):
    """The prompts grouped by the leading tokens they share: a trie of token runs, parents before children.

    Node 0 is the root (no tokens). A node holds a run of at least
    ``min_shared`` tokens that all the prompts below it continue with; a
    shorter run is not worth its own pass and stays in its children's. Every
    prompt keeps at least its last token for its own pass (its last position
    gives the first label's score), so a prompt that is the start of another
    is a leaf, not a node.
    """
    nodes = [PrefixNode(-1, 0, 0, None)]
    if not prompts:
        return nodes
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    # Tokens each neighbour in that order shares with the next, all but the last of either at most.
    common = []
    for a, b in itertools.pairwise(order):
        pa, pb, k = prompts[a], prompts[b], 0
        n = min(len(pa), len(pb)) - 1
        while k < n and pa[k] == pb[k]:
            k += 1
        common.append(k)
    # Runs [lo, hi) of `order` that share their tokens [0, start), where node `parent` ends.
    runs = [(0, len(order), 0, 0)]
    while runs:
        lo, hi, start, parent = runs.pop()
        if hi - lo == 1:
            nodes[parent].leaves.append(order[lo])
            continue
        end = min(common[lo : hi - 1])
        if end - start >= min_shared:
            nodes.append(PrefixNode(parent, start, end, order[lo]))
            parent, start = len(nodes) - 1, end
        # Split where neighbours part at token `end`: each part shares more.
        cut = lo
        for j in range(lo, hi - 1):
            if common[j] == end:
                runs.append((cut, j + 1, start, parent))
                cut = j + 1
        runs.append((cut, hi, start, parent))
    return nodes


def repeat_cache(cache, n):
    """A cache with ``cache``'s keys and values repeated ``n`` times along the batch, ``cache`` left unchanged.

    The repeat is a view: the model's next pass concatenates its new keys
    to it, which is the only copy made.
    """
    import copy

    layers = getattr(cache, "layers", None)
    if layers is None or not all(hasattr(layer, "keys") for layer in layers):
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(n)
        return cache
    repeated = copy.copy(cache)
    repeated.layers = []
    for layer in layers:
        layer = copy.copy(layer)
        if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.dim() == 4:
            layer.keys = layer.keys.expand(n, -1, -1, -1)
            layer.values = layer.values.expand(n, -1, -1, -1)
        repeated.layers.append(layer)
    return repeated


def last_logits_kwargs(model):
    """Keyword arguments that make the model compute the logits of the last position only (when it can)."""
    import inspect

    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
