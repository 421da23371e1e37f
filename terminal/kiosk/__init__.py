"""The customer's screen as a kiosk web page driven by the terminal's state machine.

- :mod:`terminal.kiosk.i18n`: the Babel/gettext catalogs (English, Simplified Chinese)
  and amounts formatted per locale.
- :mod:`terminal.kiosk.screens`: one Jinja2 template per :class:`terminal.ui.Screen`;
  each template also says which keys its screen offers.
- :mod:`terminal.kiosk.display`: :class:`KioskDisplay`, the Display that owns the
  screen's state, builds the snapshot the page shows and accepts only the keys offered.
- :mod:`terminal.kiosk.server`: the page and its WebSocket (starlette/FastAPI under
  uvicorn, on 127.0.0.1), per-boot token, Origin check, heartbeat.
- :mod:`terminal.kiosk.browser`: Chromium in kiosk mode on the page, restarted on crash.

The terminal process owns all state: the page is a view that sends back key presses.
The PIN never reaches it, only one ``*`` per digit from the PIN pad's own events.
Nothing here imports the simulator.
"""
