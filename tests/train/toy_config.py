"""Config file for the toy task (`--config tests/train/toy_config.py`), as a real run uses one."""
from tests.train.toy_task import get_config  # noqa: F401
