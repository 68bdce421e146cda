"""Moved to evrt.cli.options (argparse belongs to the CLI); kept so old imports still work."""
from ..cli.options import *  # noqa: F401,F403
from ..cli.options import (EVENTS_ADDR, PRED_ADDR, add_common, add_framing, add_mapping,  # noqa: F401
                           classifier_from, curve_from, describe_framer, mapping_from)
