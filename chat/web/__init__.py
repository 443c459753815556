"""The chat page: an HTML file, a script and a stylesheet, shipped inside the package.

The files live in ``static/`` next to this module and are served as they
are: no framework, no build step, nothing fetched from elsewhere, so the page
works on a network with no internet. :func:`page_files` reads them once.
"""

import functools
from importlib import resources
from typing import NamedTuple


class PageFile(NamedTuple):
    content_type: str
    body: bytes


# The URL path of each file, as the page refers to it.
URL_PATHS = {
    "/": "index.html",
    "/index.html": "index.html",
    "/app.js": "app.js",
    "/style.css": "style.css",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@functools.cache
def page_files() -> "dict[str, PageFile]":
    """Each URL path of the page, with its content type and bytes."""
    folder = resources.files(__name__) / "static"
    files = {}
    for path, name in URL_PATHS.items():
        extension = name[name.rindex(".") :]
        files[path] = PageFile(CONTENT_TYPES[extension], (folder / name).read_bytes())
    return files
