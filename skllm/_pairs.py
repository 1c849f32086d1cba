"""Preference data as the reward model and DPO read it: pairs, ranked lists, (prompt, response) items.

Every form comes back as plain lists in the rows' order; errors name the rows by the
frame's index labels (:func:`where_pairs`).
"""

import numbers

import numpy as np

from ._validation import check_texts, differing_by_spaces

PAIR_COLUMNS = ("prompt", "chosen", "rejected")
RANK_COLUMNS = ("prompt", "response", "rank")


def _frame(data, name):
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, (str, bytes)) or data is None:
        raise TypeError(f"{name} must be a DataFrame, got {type(data).__name__}.")
    try:
        return pd.DataFrame(data)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a DataFrame (or records convertible to one): {exc}") from exc


def _check_prompt_column(frame, name):
    """Refuse a frame whose prompt column is misspelt: the prompts would silently be empty."""
    if "prompt" in frame.columns:
        return
    indexed = [n for n in frame.index.names if isinstance(n, str) and n.strip().lower() in ("prompt", "prompts")]
    if indexed:  # set_index("prompt"), groupby("prompt").apply(...): the prompts are the index, not a column
        raise ValueError(
            f"{name} holds its prompts in its index ({indexed[0]!r}), not in a 'prompt' column (without it every "
            f"prompt is empty). Make it a column: {name}.reset_index()."
        )
    near = [c for c in frame.columns if isinstance(c, str) and c.strip().lower() in ("prompt", "prompts")]
    if near:
        raise ValueError(
            f"{name} has no 'prompt' column but has {near[0]!r}; the prompt column must be named 'prompt' exactly "
            f"(without it every prompt is empty). Rename it, e.g. {name}.rename(columns={{{near[0]!r}: 'prompt'}})."
        )


def _column(frame, column, name):  # errors name rows by the frame's index labels; texts in row order
    return check_texts(frame[column], name=f"{name}[{column!r}]")


def expand_rankings(frame, name="pairs"):
    """``(prompts, chosen, rejected)`` from ranked responses: every better-ranked one against every worse one.

    ``frame`` has columns ``prompt``, ``response`` and ``rank`` (lower is better: 1 is the best). Responses
    of equal rank are not paired. A fourth list holds each pair's chosen and rejected rows by index label.
    """
    prompts = _column(frame, "prompt", name)
    responses = _column(frame, "response", name)
    ranks = frame["rank"].to_numpy()
    bad = [
        i for i, r in enumerate(ranks) if isinstance(r, bool) or not isinstance(r, numbers.Real) or not np.isfinite(r)
    ]
    if bad:
        raise ValueError(f"{name}['rank'] must hold finite numbers; rows {bad[:10]} do not ({ranks[bad[0]]!r}).")
    ranks = [r.item() if isinstance(r, np.generic) else r for r in ranks]  # plain numbers, whatever the dtype
    spaced = differing_by_spaces(prompts)
    if spaced:  # their responses would be ranked in two groups, each without the other's
        raise ValueError(f"{name} holds prompts that differ only by surrounding spaces: {spaced[0]!r}; strip them.")
    groups = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p, []).append(i)
    for prompt, rows in groups.items():
        seen = {}
        for i in rows:
            seen.setdefault(responses[i], []).append(i)
        for response, where in seen.items():
            if len(where) > 1:  # ranked differently, it would be preferred to itself; alike, its pairs count twice
                how = "differently" if len({ranks[i] for i in where}) > 1 else "alike (each pair would count twice)"
                raise ValueError(
                    f"{name} ranks the response {response!r:.60} of the prompt {prompt!r:.60} more than once, "
                    f"{how}: rows {where[:10]} with ranks {[ranks[i] for i in where[:10]]}. Give each response of "
                    f"a prompt once, with one rank."
                )
    out = ([], [], [], [])
    labels = frame.index.tolist()
    for prompt, rows in groups.items():
        rows = sorted(rows, key=lambda i: ranks[i])
        for a, i in enumerate(rows):
            for j in rows[a + 1 :]:
                if ranks[i] < ranks[j]:
                    out[0].append(prompt)
                    out[1].append(responses[i])
                    out[2].append(responses[j])
                    out[3].append((labels[i], labels[j]))
    if not out[0]:
        alone = all(len(rows) < 2 for rows in groups.values())
        why = "each prompt has one response" if alone else "every prompt's responses share one rank"
        raise ValueError(
            f"{name} gives no preference pair: {why}. A pair is two responses to one prompt of different ranks; "
            f"in cross-validation, keep each prompt's responses in one fold (GroupKFold with groups={name}['prompt'])."
        )
    return out


def where_pairs(sources, positions):
    """Where the pairs at ``positions`` come from, for an error: their rows, by index label."""
    shown = [sources[i] for i in positions[:10]]
    if shown and isinstance(shown[0], tuple):
        return f"the pairs of rows (chosen, rejected) {shown}"
    return f"rows {shown}"


def preference_pairs(data, name="pairs", sources=False):
    """``(prompts, chosen, rejected)`` lists from a pairs DataFrame or ranked lists, validated.

    ``data`` has columns ``prompt``, ``chosen``, ``rejected`` (``prompt``
    optional), or ``prompt``, ``response``, ``rank`` (see
    :func:`expand_rankings`). With ``sources``, a fourth list gives each pair's
    rows in ``data`` by index label (:func:`where_pairs` names them in errors).
    """
    frame = _frame(data, name)
    _check_prompt_column(frame, name)
    columns = set(frame.columns)
    pair_columns, rank_columns = sorted({"chosen", "rejected"} & columns), sorted({"response", "rank"} & columns)
    if pair_columns and rank_columns:
        raise ValueError(
            f"{name} has columns of both forms of preferences: {pair_columns} of pairs {list(PAIR_COLUMNS)} and "
            f"{rank_columns} of ranked lists {list(RANK_COLUMNS)}, and which one holds the preferences is "
            f"ambiguous. Keep the columns of one form, e.g. {name}.drop(columns={rank_columns})."
        )
    if {"chosen", "rejected"} <= columns:
        chosen = _column(frame, "chosen", name)
        rejected = _column(frame, "rejected", name)
        prompts = _column(frame, "prompt", name) if "prompt" in columns else [""] * len(chosen)
        rows = frame.index.tolist()
    elif set(RANK_COLUMNS) <= columns:
        prompts, chosen, rejected, rows = expand_rankings(frame, name)
    else:
        raise ValueError(
            f"{name} must have the columns {list(PAIR_COLUMNS)} (prompt optional) or, for ranked lists, "
            f"{list(RANK_COLUMNS)}; got {sorted(map(str, columns))[:10]}."
        )
    same = [i for i, (c, r) in enumerate(zip(chosen, rejected)) if c == r]
    if same:
        raise ValueError(
            f"{name} has {len(same)} pair(s) whose chosen and rejected responses are the same text, at "
            f"{where_pairs(rows, same)}: they express no preference. Drop them."
        )
    return (prompts, chosen, rejected, rows) if sources else (prompts, chosen, rejected)


def prompt_response_items(X, name="X"):
    """``(prompts, responses)`` from texts, ``(prompt, response)`` pairs or a DataFrame with those columns."""
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        if "response" not in X.columns:
            pairs = " To score preference pairs, use score()." if {"chosen", "rejected"} & set(X.columns) else ""
            raise ValueError(
                f"{name} as a DataFrame needs a 'response' column (and optionally 'prompt'); it has the columns "
                f"{sorted(map(str, X.columns))[:10]}, and no column is taken as the responses by guess.{pairs} "
                f"{name} may also be a list of response texts or of (prompt, response) tuples."
            )
        _check_prompt_column(X, name)
        responses = _column(X, "response", name)
        prompts = _column(X, "prompt", name) if "prompt" in X.columns else [""] * len(responses)
        return prompts, responses
    if isinstance(X, (list, tuple, pd.Series, np.ndarray)) and len(X) and all(_is_pair(x) for x in X):
        X = [tuple(x) for x in X]  # lists (as JSON gives them), a Series of pairs, an (n, 2) array
        wrong = [i for i, x in enumerate(X) if len(x) != 2]
        if wrong:
            raise ValueError(f"{name} must hold (prompt, response) pairs; rows {wrong[:10]} do not have 2 items.")
        prompts = check_texts([x[0] for x in X], name=f"{name} prompts")
        responses = check_texts([x[1] for x in X], name=f"{name} responses")
        return prompts, responses
    if isinstance(X, tuple) and len(X) == 2 and all(isinstance(x, str) for x in X):  # one pair, not 2 texts?
        raise ValueError(
            f"{name} is a tuple of 2 texts: to score one (prompt, response) pair, pass [(prompt, response)]; to "
            f"score 2 responses, pass them in a list."
        )
    responses = check_texts(X, name=name)
    return [""] * len(responses), responses


def _is_pair(item):  # a (prompt, response) item, or one of another length to be named
    return isinstance(item, (tuple, list, np.ndarray))
