"""`graphc.backends.cudnn`: accepted settings; graphc does not use cuDNN."""

enabled = False
deterministic = False
benchmark = False


def version() -> None:
    """None: graphc uses no cuDNN."""
    return None


def is_available() -> bool:
    return False
