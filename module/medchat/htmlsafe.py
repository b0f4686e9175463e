"""The HTML of `org.matrix.custom.html` messages, cut down to what the Matrix spec lets clients show.

`formatted_body` comes from any Matrix client, so the app must never render it as it is. This is the
spec's allow-list (client-server API, "m.room.message msgtypes", HTML): its tags and attributes,
`href` only with the schemes the spec names, `img` only from `mxc://`, `code` classes only
`language-*`, and colours only as `#rrggbb`. Everything else goes: unknown tags lose their markup
but keep their text, `script`/`style` (and friends) lose their text too, comments and processing
instructions vanish. `mx-reply` (the quoted parent of a reply) is dropped when `strip_reply` is set,
as the spec tells clients to. The same function cleans what the app sends, so a message sent
through the API reads the same in Element as here.

Written on the standard library's tokenizer rather than a sanitising package: it is small, and the
output is built only from what the allow-list re-emits, so nothing the parser misreads can pass.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_TAGS = frozenset(
    "font del h1 h2 h3 h4 h5 h6 blockquote p a ul ol sup sub li b i u strong em s strike code hr br div"
    " table thead tbody tr th td caption pre span img details summary mx-reply".split()
)
_VOID = frozenset({"br", "hr", "img"})
# Whose text is never shown either (the tokenizer already reads script/style as raw text).
_DROP_WITH_CONTENT = frozenset({"script", "style", "head", "title", "iframe", "object", "template", "textarea"})
_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_SCHEMES = ("https://", "http://", "ftp://", "mailto:", "magnet:")
_MAX_DEPTH = 100  # the spec's advice on nesting; deeper tags lose their markup, not their text


def _attribute_ok(tag: str, name: str, value: str) -> bool:
    if name in ("data-mx-color", "data-mx-bg-color", "color"):
        return tag in ("font", "span") and bool(_COLOUR.match(value)) and (name != "color" or tag == "font")
    allowed = {
        "span": ("data-mx-spoiler", "data-mx-maths"),
        "div": ("data-mx-maths",),
        "a": ("name", "target", "href"),
        "img": ("width", "height", "alt", "title", "src"),
        "ol": ("start",),
        "code": ("class",),
    }.get(tag, ())
    if name not in allowed:
        return False
    if name == "href":
        return value.lower().startswith(_SCHEMES)
    if name == "src":
        return value.startswith("mxc://")
    if name == "class":
        return value.startswith("language-") and " " not in value
    return True


class _Sanitiser(HTMLParser):
    def __init__(self, strip_reply: bool):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._open: list[str] = []
        self._skipping: list[str] = []  # the dropped element whose text is being skipped
        self._strip_reply = strip_reply

    def _drops(self, tag: str) -> bool:
        return tag in _DROP_WITH_CONTENT or (self._strip_reply and tag == "mx-reply")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.append(tag)
            return
        if self._drops(tag):
            self._skipping.append(tag)
            return
        if tag not in _TAGS or len(self._open) >= _MAX_DEPTH:
            return
        kept = "".join(
            f' {name}="{html.escape(value)}"'
            for name, value in attrs
            if value is not None and _attribute_ok(tag, name, value)
        )
        self.out.append(f"<{tag}{kept}>")
        if tag not in _VOID:
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self._open and self._open[-1] == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
            return
        if tag not in self._open:
            return  # never opened (or dropped): nothing to close
        while self._open:  # close what was left open inside it, as browsers do
            closing = self._open.pop()
            self.out.append(f"</{closing}>")
            if closing == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        self.close()
        return "".join(self.out) + "".join(f"</{tag}>" for tag in reversed(self._open))


def sanitise_html(markup: str, strip_reply: bool = False) -> str:
    """`markup` reduced to the spec's allowed tags and attributes, well nested."""
    parser = _Sanitiser(strip_reply)
    parser.feed(markup)
    return parser.result()
