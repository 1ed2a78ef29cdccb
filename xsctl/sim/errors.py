"""Server-side failures, raised by the simulator's handlers and sent as
``{Status: Failure, ErrorDescription: [code, params...]}``."""

from __future__ import annotations


class XapiFailure(Exception):
    def __init__(self, code: str, *params: object) -> None:
        self.code = code
        self.params = [str(p) for p in params]
        super().__init__(code, *self.params)

    def __repr__(self) -> str:
        return f"XapiFailure({self.code!r}, {self.params!r})"


def internal_error(text: str) -> XapiFailure:
    return XapiFailure("INTERNAL_ERROR", text)
