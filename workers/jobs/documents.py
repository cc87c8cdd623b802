"""Documents' PDFs: a thin call into server/invoicing/render.py. Idempotent: a document's PDF is
stored once (a unique row), so a second run, or two at once, render nothing twice that is kept."""

from __future__ import annotations

from typing import Any

from server.invoicing import render


async def render_documents(ctx: dict[str, Any]) -> int:
    """Render and store the PDFs of documents issued since the last run (downloads render any missing
    one on demand, too)."""
    return await render.render_due()
