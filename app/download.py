"""The all-results zip streamed from a route of the app's own server, so it never sits whole in
memory: each X-ray's files are made when the download reaches it and sent on (st.download_button
would hold the whole zip until Streamlit drops it, two clean-ups after the click).

``app.asgi`` serves ``route()`` beside Streamlit's routes (``make run`` and scripts/start.py start
the app that way). Each session offers its zip at an address holding a token no one can guess,
valid while the session lasts: the offer is a session-scoped resource, withdrawn when Streamlit
ends the session. A plain ``streamlit run streamlit_app.py`` has no such route: ``serving()`` is
False and the page offers the zip with st.download_button instead.
"""
from __future__ import annotations

import html
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import streamlit as st
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

PATH = "lungseg-results"                  # the route: {base}/lungseg-results/{token}/{file name}
FILE_NAME = "lungseg-results.zip"
GONE = "These results are no longer here: upload the X-rays again to download them."
_offers: dict[str, "Offer"] = {}          # token -> the offer of a session that is still open
_served = False                           # whether this process's server has the route


@dataclass(eq=False)
class Offer:
    """A session's zip: ``pieces()`` makes its bytes, a piece at a time (None once withdrawn)."""

    token: str
    pieces: Callable[[], Iterator[bytes]] | None = None


def _withdraw(offer: Offer) -> None:
    _offers.pop(offer.token, None)
    offer.pieces = None                   # what it held (the session's uploads) is let go


@st.cache_resource(scope="session", on_release=_withdraw, show_spinner=False)
def _session_offer() -> Offer:
    """This session's offer: one token for as long as the session lasts."""
    offer = Offer(secrets.token_urlsafe(24))
    _offers[offer.token] = offer
    return offer


def serving() -> bool:
    """Whether the zip route is served by this process (``route()`` was made)."""
    return _served


def offer(pieces: Callable[[], Iterator[bytes]]) -> str:
    """Offer this session's zip (made by ``pieces``, the latest run's); its address, relative to
    the app's page."""
    held = _session_offer()
    held.pieces = pieces
    return f"{PATH}/{held.token}/{FILE_NAME}"


def link(address: str, label: str, about: str) -> str:
    """The download link, shaped like the app's primary buttons (for st.html)."""
    style = ("display:inline-block;padding:0.45rem 0.9rem;border-radius:0.5rem;"
             "background:#ff4b4b;color:#fff;text-decoration:none;font-weight:400")
    return (f'<a href="{html.escape(address)}" download="{FILE_NAME}" title="{html.escape(about)}" '
            f'style="{style}">{html.escape(label)}</a>')


async def _send(request: Request) -> Response:
    held = _offers.get(request.path_params["token"])
    pieces = held.pieces if held else None
    if pieces is None:
        return PlainTextResponse(GONE, status_code=404)
    return StreamingResponse(pieces(), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{FILE_NAME}"',
                                      "Cache-Control": "no-store"})


def route(base_url: str = "") -> Route:
    """The route that sends offered zips, under the server's ``base_url`` (server.baseUrlPath)."""
    global _served
    _served = True
    base = "/".join(part for part in base_url.split("/") if part)
    return Route(f"{'/' + base if base else ''}/{PATH}/{{token}}/{FILE_NAME}", _send)
