"""Every probe case, from the modules that group them by estimator."""

import _cases_encoders
import _cases_index
import _cases_lm
import _cases_misc


def all_cases(ctx):
    return (
        _cases_encoders.all_cases(ctx)
        + _cases_lm.all_cases(ctx)
        + _cases_index.all_cases(ctx)
        + _cases_misc.all_cases(ctx)
    )
