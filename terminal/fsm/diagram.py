"""Render the customer state machine: Mermaid always, SVG/PNG through graphviz if present."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

from atm_common.errors import ConfigError
from terminal.fsm.customer import TRANSITIONS, State, machine_transitions, mermaid

log = logging.getLogger(__name__)


def graphviz_available() -> bool:
    return importlib.util.find_spec("graphviz") is not None and shutil.which("dot") is not None


def write_diagram(path: Path) -> list[Path]:
    """Write the diagram to ``path``; always also the Mermaid text. Returns paths written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    mermaid_path = path if suffix in (".md", ".mmd") else path.with_suffix(".mmd")
    text = mermaid()
    mermaid_path.write_text(f"```mermaid\n{text}```\n" if mermaid_path.suffix == ".md" else text)
    written = [mermaid_path]
    if suffix in (".svg", ".png"):
        if not graphviz_available():
            raise ConfigError(
                str(path),
                "",
                "SVG/PNG needs graphviz (Debian graphviz, pip graphviz); Mermaid written",
            )
        from transitions.extensions import GraphMachine

        class _Model:
            has_card = False  # read by the guarded rows' conditions

        machine = GraphMachine(
            model=_Model(),
            states=[s.name for s in State],
            transitions=machine_transitions(TRANSITIONS, lambda s: s.name),
            initial=State.OUT_OF_SERVICE.name,
            auto_transitions=False,
            graph_engine="graphviz",
            title="ATM customer session",
        )
        machine.get_graph().draw(str(path), format=suffix[1:], prog="dot")
        written.append(path)
    return written
