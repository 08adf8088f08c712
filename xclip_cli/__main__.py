"""``python -m xclip_cli ...`` is ``xclip-index ...``."""
from xclip_cli.cli import entry

entry()
