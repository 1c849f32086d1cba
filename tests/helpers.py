"""Helpers shared by the test modules."""


def count_rows(model):
    """Attach a hook counting the texts that go through ``model``'s forward pass.

    Returns the list that collects each call's batch size, and the hook handle.
    """
    seen = []

    def hook(module, args, kwargs, output):
        seen.append(kwargs["input_ids"].shape[0])

    handle = model.register_forward_hook(hook, with_kwargs=True)
    return seen, handle
