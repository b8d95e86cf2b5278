"""The Mapping page: the template mapping edited in a form or as YAML, checked, previewed, applied, rolled back.

Nothing here decides what a mapping means or does: the candidate is checked by `load_mapping` (as `templates
validate` does), previewed by `preview_remap` (as `templates diff` does), written and put in force by
`MappingChanges.install` (atomically, re-mapped at once, recorded in the history with who applied it). Apply
carries the text that was previewed and the digest of the file the edit started from, so what goes in force is
what the administrator saw, and an edit made elsewhere meanwhile is neither lost nor overwritten.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from bridge.errors import UserError
from bridge.mapping_change import EditedMeanwhile, MappingChanges, MappingPreview, not_editable, preview_remap
from bridge.mapping_edit import (
    STATES,
    Checked,
    MappingFields,
    Problem,
    TemplateFields,
    check,
    parse_states,
    read_fields,
    text_diff,
    with_fields,
)
from bridge.store import Database
from bridge.store.mapping_state import AppliedMapping, held_mapping, mapping_history
from bridge.templates import default_mapping_path, load_mapping_text, mapping_digest
from bridge.web.admin.context import AdminContext
from bridge.web.admin.layout import render, signed_in
from bridge.web.admin.session import see_other, tell

PAGE = "/admin/mapping"
HISTORY_SHOWN = 20
PREVIEW_LISTED = 200  # changes listed per mailbox; the counts are always whole
NEW_TEMPLATES = 1  # empty template rows the form offers


class MappingPage:
    def __init__(self, context: AdminContext) -> None:
        self._context = context

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/mapping", self.mapping, name="mapping"),
            web.post("/mapping/check", self.check, name="mapping_check"),
            web.post("/mapping/apply", self.apply, name="mapping_apply"),
            web.post("/mapping/rollback", self.rollback, name="mapping_rollback"),
        ]

    async def mapping(self, request: web.Request) -> web.StreamResponse:
        text, digest = await self._file()
        return await self._render(request, text=text, based_on=digest)

    async def check(self, request: web.Request) -> web.StreamResponse:
        """Validate, or preview, the candidate made in either editor; nothing is written."""
        form = await request.post()
        based_on = str(form.get("based_on", ""))
        fields: MappingFields | None = None
        if form.get("editor") == "form":
            fields = _fields(form)
            current, _ = await self._file()
            try:
                text = with_fields(current, fields)
            except UserError as exc:
                return await self._render(
                    request, text=current, based_on=based_on, fields=fields, refusal=exc.summary, status=400
                )
        else:
            text = str(form.get("yaml", "")).replace("\r\n", "\n")
        checked = check(text, self._path().name)
        preview = None
        if checked.valid and form.get("action") == "preview":
            candidate = load_mapping_text(text, self._path().name)
            preview = await self._context.db.run(
                lambda session: preview_remap(session, candidate, listed=PREVIEW_LISTED)
            )
        status = 200 if checked.valid else 400
        return await self._render(
            request, text=text, based_on=based_on, fields=fields, checked=checked, preview=preview, status=status
        )

    async def apply(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        text, based_on = str(form.get("yaml", "")).replace("\r\n", "\n"), str(form.get("based_on", ""))
        return await self._install(request, text, based_on, "admin page")

    async def rollback(self, request: web.Request) -> web.StreamResponse:
        """Back to the mapping applied before the newest: one step, as the history's second row shows it."""
        form = await request.post()
        history = await self._context.db.run(lambda session: mapping_history(session, 2))
        wanted = str(form.get("to", ""))
        if len(history) < 2 or str(history[1].id) != wanted:
            await tell(request, "That is not the mapping before the newest any more; nothing was changed.", self._db)
            return see_other(PAGE)
        previous = history[1]
        how = f"admin page, rollback to the mapping applied {previous.applied_at:%Y-%m-%d %H:%M:%S}Z"
        return await self._install(request, previous.text, str(form.get("based_on", "")), how)

    async def _install(self, request: web.Request, text: str, based_on: str, how: str) -> web.StreamResponse:
        changes, refusal = self._changes()
        if changes is None:
            return await self._render(request, text=text, based_on=based_on, refusal=refusal, status=409)
        who = f"{signed_in(request).name} ({how})"
        try:
            emitted = await changes.install(text, who, based_on=based_on)
        except EditedMeanwhile as exc:
            current, digest = await self._file()
            return await self._render(request, text=current, based_on=digest, refusal=exc.render(), status=409)
        except UserError:
            checked = check(text, self._path().name)
            return await self._render(request, text=text, based_on=based_on, checked=checked, status=400)
        await tell(request, f"Mapping applied: {emitted} change(s) sent to the workforce system.", self._db)
        return see_other(PAGE)

    async def _render(
        self,
        request: web.Request,
        *,
        text: str,
        based_on: str,
        fields: MappingFields | None = None,
        checked: Checked | None = None,
        preview: MappingPreview | None = None,
        refusal: str | None = None,
        status: int = 200,
    ) -> web.Response:
        # One more than shown: the oldest row shown needs the one before it for its diff.
        history = await self._context.db.run(lambda session: mapping_history(session, HISTORY_SHOWN + 1))
        held = await self._context.db.run(held_mapping)
        _, refused = self._changes()
        if fields is None:
            fields = _fields_of(text)
        page = {
            "path": str(self._path()),
            "editable": refused is None,
            "not_editable": refused,
            "text": text,
            "based_on": based_on,
            "fields": fields,
            "templates": [*fields.templates, *(TemplateFields("", "busy"),) * NEW_TEMPLATES] if fields else [],
            "states": STATES,
            "checked": checked,
            "lines": _numbered(checked) if checked is not None and not checked.valid else [],
            "preview": preview,
            "mass_withdrawal": preview is not None and preview.is_mass_withdrawal(self._context.config.sync),
            "refusal": refusal,
            "history": _history_rows(history),
            "held": held,
        }
        return render(request, "mapping.html", page, status=status)

    def _changes(self) -> tuple[MappingChanges | None, str | None]:
        refusal = not_editable(self._context.config.templates, self._context.live)
        changes = self._context.mapping_changes
        if refusal is None and changes is None:
            refusal = "this bridge was started without the mapping watcher (a test app): the mapping is read-only"
        return (changes if refusal is None else None), refusal

    def _path(self) -> Path:
        live = self._context.live
        return live.path if live is not None else (self._context.config.templates or default_mapping_path())

    async def _file(self) -> tuple[str, str]:
        """The file as it is now (what an edit starts from, even an invalid hand edit) and its digest."""
        raw = await asyncio.to_thread(self._path().read_bytes)
        return raw.decode("utf-8", errors="replace"), mapping_digest(raw)

    @property
    def _db(self) -> Database:
        return self._context.db


def _fields(form: MultiDictProxy[Any]) -> MappingFields:
    """The form editor's fields as posted; a template row without a name, or ticked for removal, is left out."""
    templates = []
    count = int(str(form.get("template_rows", "0"))) if str(form.get("template_rows", "0")).isdigit() else 0
    for row in range(min(count, 500)):
        name = str(form.get(f"t{row}_name", "")).strip()
        if not name or form.get(f"t{row}_remove") == "on":
            continue
        templates.append(
            TemplateFields(
                name=name,
                show_as=str(form.get(f"t{row}_show_as", "")),
                all_day=form.get(f"t{row}_all_day") == "on",
                state_until=str(form.get(f"t{row}_state_until", "")),
                category=str(form.get(f"t{row}_category", "")),
                subject=str(form.get(f"t{row}_subject", "")),
            )
        )
    return MappingFields(
        ignore_prefix=str(form.get("ignore_prefix", "")),
        days_ahead=str(form.get("days_ahead", "")).strip(),
        show={state: str(form.get(f"show_{state}", "")).strip() for state in STATES},
        templates=tuple(templates),
        precedence=parse_states(str(form.get("precedence", ""))),
    )


def _fields_of(text: str) -> MappingFields | None:
    """The form's fields for `text`, when it is a valid mapping the form can show."""
    if not check(text, "mapping.yaml").valid:
        return None
    return read_fields(text)


def _numbered(checked: Checked) -> list[tuple[int, str, list[Problem]]]:
    """The candidate's lines, numbered, each with its problems: the page shows where each problem is."""
    by_line: dict[int, list[Problem]] = {}
    for problem in checked.problems:
        if problem.line is not None:
            by_line.setdefault(problem.line, []).append(problem)
    return [(number, line, by_line.get(number, [])) for number, line in enumerate(checked.text.split("\n"), 1)]


def _history_rows(history: list[AppliedMapping]) -> list[dict[str, Any]]:
    rows = []
    for index, entry in enumerate(history[:HISTORY_SHOWN]):
        before = history[index + 1] if index + 1 < len(history) else None
        diff = text_diff(before.text, entry.text, before_name="before", after_name="after") if before else ""
        rows.append({"entry": entry, "diff": diff, "first": before is None})
    return rows
