"""Errors a user can fix: shown as a list of problems, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Something the person running the bridge must correct (config, mapping, a command-line argument).

    Every problem found is collected before it is raised, so one run shows them all.
    """

    def __init__(self, summary: str, problems: list[str] | tuple[str, ...] = ()) -> None:
        self.summary = summary
        self.problems = tuple(problems)
        super().__init__(self.render())

    def render(self) -> str:
        if not self.problems:
            return self.summary
        return "\n".join([f"{self.summary}:", *(f"  - {problem}" for problem in self.problems)])
