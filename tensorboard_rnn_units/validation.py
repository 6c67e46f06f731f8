"""Argument checks shared by the summary API, with errors that name the argument."""

import operator


def check_int(name, value, minimum, maximum=None, hint=""):
    """``value`` as an ``int`` (numpy integers too, never ``bool``) in
    ``minimum..maximum``; else a ``ValueError`` naming ``name``."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        expected = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name}: expected an integer {expected}{hint}, got {value!r}")
    return number
