"""The live page (`evrt serve --web`, `evrt watch --web`): ``LiveState`` gathers what the classifier
produces at no cost to it; ``WebServer`` (aiohttp, extra ``[web]``) pushes it to browsers over a
WebSocket at a bounded rate. Importing this package does not import aiohttp."""
from .live import LiveState

__all__ = ["LiveState", "WebServer", "parse_web_addr"]


def __getattr__(name):
    if name in ("WebServer", "parse_web_addr", "NO_AIOHTTP"):
        from . import server
        return getattr(server, name)
    raise AttributeError(name)
