"""The Textual terminal app. It reads ``xsctl.xapi.cache`` and acts through
``xsctl.xapi.ops``; it never calls xapi itself."""
