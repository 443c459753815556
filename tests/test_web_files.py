"""The page's files as the server ships them: complete, self-contained, text-only."""

import re

from chat.core.messages import PASSWORD_NEEDED, PASSWORD_TOO_MANY_TRIES, PASSWORD_WRONG
from chat.web import URL_PATHS, page_files


def text_of(path: str) -> str:
    return page_files()[path].body.decode("utf-8")


def test_every_url_path_has_its_file_and_content_type():
    files = page_files()
    assert set(files) == set(URL_PATHS)
    assert files["/"].content_type == "text/html; charset=utf-8"
    assert files["/app.js"].content_type == "text/javascript; charset=utf-8"
    assert files["/style.css"].content_type == "text/css; charset=utf-8"
    assert files["/"] == files["/index.html"]
    assert all(file.body for file in files.values())


def test_the_page_loads_only_its_own_files():
    html = text_of("/")
    assert re.findall(r'(?:src|href)="([^"]*)"', html) == ["data:,", "style.css", "app.js"]
    for path in ["/", "/app.js", "/style.css"]:
        assert not re.search(r"https?://|//cdn|@import|url\(", text_of(path)), path


def test_the_script_never_puts_text_in_as_html():
    script = text_of("/app.js")
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("]:
        assert sink not in script


def test_every_element_the_script_looks_up_is_on_the_page():
    ids = set(re.findall(r'\bid="([^"]+)"', text_of("/")))
    wanted = set(re.findall(r'\$\("([^"]+)"\)', text_of("/app.js")))
    wanted |= set(re.findall(r'"(user-count|users-heading-count)"', text_of("/app.js")))
    assert wanted and wanted <= ids


def test_the_script_knows_the_password_lines_the_server_sends():
    script = text_of("/app.js")
    assert f'"{PASSWORD_NEEDED}"' in script
    assert f'"{PASSWORD_WRONG}"' in script
    assert PASSWORD_TOO_MANY_TRIES.startswith(re.search(r'PASSWORD_TOO_MANY_TRIES = "([^"]+)"', script).group(1))
