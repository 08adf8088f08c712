"""``xclip-index serve``: a web app over an index (Starlette + uvicorn + Jinja2).

``xclip_serve.app`` (pages, API, media), ``xclip_serve.auth`` (token, sessions, CSRF),
``xclip_serve.media`` (video bytes, thumbnails), ``xclip_serve.search`` (the search form),
``xclip_serve.runs`` (history across runs); the subcommand is ``xclip_cli.serve``.
"""
