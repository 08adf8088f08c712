"""``python -m xclip_cli ...`` is ``xclip-index ...``."""
from xclip_cli.main import entry

entry()
