"""Read the fields of an admin change form as a browser would submit them, so tests post realistic data."""
from __future__ import annotations

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    """Collects the submittable values of the form with id `form_id` (Django admin: `<model>_form`)."""

    def __init__(self, form_id: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = form_id is None
        self.data: dict[str, list[str]] = {}
        self._select: str | None = None
        self._select_multiple = False
        self._select_chosen: list[str] = []
        self._first_option: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form_id is not None:
            self.inside = a.get("id") == self.form_id
            return
        if not self.inside or "__prefix__" in a.get("name", ""):
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("submit", "button", "image", "file", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.setdefault(name, []).append(a.get("value", "on" if kind == "checkbox" else ""))
        elif tag == "select" and name:
            self._select, self._select_multiple = name, "multiple" in a
            self._select_chosen, self._first_option = [], None
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            if self._first_option is None:
                self._first_option = value
            if "selected" in a:
                self._select_chosen.append(value)
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.form_id is not None:
            self.inside = False
        elif tag == "select" and self._select is not None:
            chosen = self._select_chosen
            if not chosen and not self._select_multiple and self._first_option is not None:
                chosen = [self._first_option]
            if chosen:
                self.data.setdefault(self._select, []).extend(chosen)
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            self.data.setdefault(self._textarea, []).append(text.removeprefix("\n"))
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)


def form_data(html: str, form_id: str | None = None) -> dict[str, str | list[str]]:
    """The values the form would submit: single values as strings, repeated names as lists."""
    reader = _FormReader(form_id)
    reader.feed(html)
    return {name: values[0] if len(values) == 1 else values for name, values in reader.data.items()}
