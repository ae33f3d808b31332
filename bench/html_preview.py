"""HTML to text for the email preview: selectolax (lexbor), inscriptis (lxml)
and html5lib compared on speed and on hostile mail (issue 17, item 1).

Each measurement runs in its own process with a time limit, so a library that
hangs, recurses too deep or crashes is reported as such and the run ends.
Prints a table; asserts nothing. ``python -m bench.html_preview [--quick]``.
"""

from __future__ import annotations

import importlib
import multiprocessing
import sys
import time
from collections.abc import Callable
from typing import Any

LIBRARIES = ("selectolax", "inscriptis", "html5lib")
LIMIT_S = 60.0  # per measurement
MARKER = "Quarterly update"


def newsletter(size: int) -> str:
    """An Outlook/Mailchimp-like newsletter of about ``size`` characters."""
    head = ("<!DOCTYPE html><html xmlns:v=\"urn:schemas-microsoft-com:vml\"><head>"
            "<!--[if gte mso 9]><xml><o:OfficeDocumentSettings><o:AllowPNG/></o:OfficeDocumentSettings>"
            "</xml><![endif]--><meta charset=\"utf-8\"><title>News</title><style>"
            + "".join(f".c{i}{{margin:0;padding:{i % 9}px;font-family:Arial}}" for i in range(300))
            + "</style></head><body><![ if !mso ]><div class=\"wrap\"><![endif]>"
            f"<table role=\"presentation\"><tr><td><h1>{MARKER}</h1>")
    block = ("<tr><td class=\"c1\" style=\"padding:8px;color:#333\"><p>Our team shipped <b>new features</b>"
             " &amp; fixed bugs&nbsp;this month. <a href=\"https://example.com/x?utm=1\">Read more</a></p>"
             "<img src=\"https://example.com/i.png\" alt=\"\" width=\"600\"></td></tr>\n")
    body = block * max(1, (size - len(head)) // len(block))
    return head + body + "</td></tr></table><![ if !mso ]></div><![endif]></body></html>"


def hostile() -> dict[str, str]:
    """Mail that breaks parsers: each holds MARKER, which a good parse keeps."""
    return {
        "marked sections": f"<![ if !mso ]><p>{MARKER}</p><![endif]><![mso]>x<![ INCLUDE [ y ]]>",
        "unclosed tags": f"<div><table><tr><td><p><b><i>{MARKER}<span" + "<div><p>" * 1000,
        "NUL bytes": f"<p>\x00{MARKER}\x00</p><a href='\x00'>&#0;</a>",
        "invalid UTF-8": (b"<p>\xff\xfe\xc3(" + MARKER.encode() + b"\xed\xa0\x80</p>").decode("utf-8", "replace"),
        "deep nesting 100k": "<div>" * 100_000 + MARKER + "</div>" * 100_000,
        "huge attribute 5 MB": f"<p title=\"{'a' * 5_000_000}\">{MARKER}</p>",
        "unterminated comment": f"<p>{MARKER}</p><!-- " + "x" * 100_000,
        "entities": f"<p>{MARKER} &#xD800; &#x110000; &#99999999999; &bogus;</p>",
    }


def to_text(library: str) -> Callable[[str], str]:
    """The library's HTML-to-text, as the preview would call it."""
    if library == "selectolax":
        lexbor: Any = importlib.import_module("selectolax.lexbor")

        def selectolax(html: str) -> str:
            tree = lexbor.LexborHTMLParser(html)
            tree.strip_tags(["script", "style", "head", "title"])
            return str(tree.root.text(separator=" ") if tree.root else "")
        return selectolax
    if library == "inscriptis":
        inscriptis: Any = importlib.import_module("inscriptis")
        return lambda html: str(inscriptis.get_text(html))
    html5lib: Any = importlib.import_module("html5lib")
    return lambda html: "".join(html5lib.parse(html, treebuilder="etree", namespaceHTMLElements=False).itertext())


def _measure(library: str, html: str, out: Any) -> None:
    convert = to_text(library)
    started = time.perf_counter()
    try:
        text = convert(html)
        out.send(("ok" if MARKER in text else "text lost", time.perf_counter() - started))
    except BaseException as error:  # noqa: BLE001 - the figure is what failed
        out.send((type(error).__name__, time.perf_counter() - started))


def measure(library: str, html: str) -> str:
    """``"ok 12.3 ms"``, ``"RecursionError 0.1 ms"``, ``"timeout"`` or ``"crashed"``."""
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=_measure, args=(library, html, send))
    process.start()
    outcome = receive.recv() if receive.poll(LIMIT_S) else None
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join()
    if outcome is None:
        return f"timeout >{LIMIT_S:.0f} s" if process.exitcode in (None, -9) else f"crashed ({process.exitcode})"
    result, seconds = outcome
    return f"{result} {seconds * 1000:.1f} ms"


def main() -> None:
    quick = "--quick" in sys.argv
    sizes = {"newsletter 50 KB": 50_000, "5 MB": 5_000_000}
    if not quick:
        sizes["25 MB"] = 25_000_000
    cases = {name: newsletter(size) for name, size in sizes.items()} | hostile()
    print(f"{'case':24}" + "".join(f"{lib:>26}" for lib in LIBRARIES))
    for name, html in cases.items():
        print(f"{name:24}" + "".join(f"{measure(lib, html):>26}" for lib in LIBRARIES), flush=True)


if __name__ == "__main__":
    main()
