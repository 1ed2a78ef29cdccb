"""Connecting: the saved profiles (or one named on the command line), adding a
profile, first-use certificate confirmation and the password (keyring or asked)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from xsctl import names, secrets
from xsctl.config import Config, Profile, local_profile, state_dir
from xsctl.files import write_private
from xsctl.ui.modals.trust import AskPassword, TrustCertificate
from xsctl.ui.widgets.ticks import Tick
from xsctl.xapi.client import Client, Target, ensure_trusted
from xsctl.xapi.errors import ChangedCertificate, UnknownCertificate, XapiError, XsctlError

if TYPE_CHECKING:
    from xsctl.ui.app import XsctlApp


def remember_last(profile: str | None) -> None:
    if not profile:
        return
    with contextlib.suppress(OSError):
        write_private(state_dir() / "last_profile", profile + "\n")


def last_profile() -> str | None:
    try:
        return (state_dir() / "last_profile").read_text(encoding="utf-8").strip() or None
    except (OSError, ValueError):  # missing, or not text: connect to nothing by default
        return None


def _open(target: Target, password: str | None) -> Client:
    """Log in and load the pool; a load that fails logs out again."""
    client = Client.connect(target, password)
    try:
        client.cache.load()
        names.remember(target.profile, target.url, client.cache)
    except BaseException:
        client.close()
        raise
    return client


class ConnectScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add profile", id="connect.add"),
        Binding("q", "app.quit", "Quit", id="connect.quit"),
    ]

    def __init__(self, target: Target | None = None, password: str | None = None) -> None:
        super().__init__()
        self.target = target
        self.password = password
        self.config = Config()

    @property
    def xapp(self) -> XsctlApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Vertical(id="connect-box"):
            yield Label("xsctl: connect to a pool", classes="dialog-title")
            yield OptionList(id="profiles")
            yield Label("", id="connect-status")
            with Vertical(id="add-profile", classes="hidden"):
                yield Label("New profile", classes="section")
                with Horizontal(classes="field"):
                    yield Label("Name", classes="field-label")
                    yield Input(placeholder="lab", id="p-name")
                with Horizontal(classes="field"):
                    yield Label("Host URL", classes="field-label")
                    yield Input(placeholder="https://pool-master.example", id="p-url")
                with Horizontal(classes="field"):
                    yield Label("User", classes="field-label")
                    yield Input("root", id="p-user")
                yield Tick("Read-only (refuse every change)", id="p-ro")
                with Horizontal(classes="buttons"):
                    yield Button("Save and connect", variant="primary", id="p-save")
                    yield Button("Cancel", id="p-cancel")
            yield Static(Text("enter connects · a adds a profile · q quits", style="dim"))
        yield Footer()

    def on_mount(self) -> None:
        self.fill_profiles()
        if self.target is not None:
            self.connect(self.target)
            return
        default = last_profile() or self.config.default
        if default and default in self.config.profiles:
            self.connect(self.config.profiles[default].target())
        elif not self.config.profiles and local_profile() is None:
            self.action_add()

    def fill_profiles(self) -> None:
        ol = self.query_one("#profiles", OptionList)
        ol.clear_options()
        profiles = list(self.config.profiles.values())
        local = local_profile()
        if local is not None:
            profiles.insert(0, local)
        for p in profiles:
            t = Text(p.name, style="bold")
            t.append(f"  {p.display}")
            if p.read_only:
                t.append("  read-only", style="dim")
            ol.add_option(Option(t, id=p.name))
        if profiles:
            ol.highlighted = 0
            ol.focus()

    def _profile(self, name: str) -> Profile:
        return self.config.get(name)

    @on(OptionList.OptionSelected, "#profiles")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.connect(self._profile(event.option.id).target())

    def action_add(self) -> None:
        self.query_one("#add-profile").remove_class("hidden")
        self.query_one("#p-name", Input).focus()

    @on(Button.Pressed, "#p-cancel")
    def _cancel_add(self) -> None:
        self.query_one("#add-profile").add_class("hidden")

    @on(Input.Submitted, "#p-name, #p-url, #p-user")
    @on(Button.Pressed, "#p-save")
    def _save(self) -> None:
        p = Profile(
            name=self.query_one("#p-name", Input).value.strip(),
            url=self.query_one("#p-url", Input).value.strip(),
            user=self.query_one("#p-user", Input).value.strip() or "root",
            read_only=self.query_one("#p-ro", Checkbox).value,
        )
        try:
            self.config.add(p)
            self.config.save()
        except XsctlError as e:
            self.status(str(e), error=True)
            return
        self.query_one("#add-profile").add_class("hidden")
        self.fill_profiles()
        self.connect(p.target())

    def status(self, text: str, error: bool = False) -> None:
        self.query_one("#connect-status", Label).update(
            Text(text, style="bold red" if error else "italic"))

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def connect(self, target: Target) -> None:
        where = target.url
        self.status(f"Connecting to {where}…")
        try:
            await asyncio.to_thread(ensure_trusted, target, None)
        except UnknownCertificate as e:
            if not await self.app.push_screen_wait(TrustCertificate(e.host, e.fingerprint)):
                self.status("Not connected: the certificate was not trusted")
                return
            target.accept_fingerprint = e.fingerprint
            try:
                await asyncio.to_thread(ensure_trusted, target, None)
            except XsctlError as e2:
                self.status(str(e2), error=True)
                return
        except ChangedCertificate as e:
            await self.app.push_screen_wait(TrustCertificate(e.host, e.seen, e.pinned))
            self.status("Refused: the host's certificate changed", error=True)
            return
        except XsctlError as e:
            self.status(str(e), error=True)
            return
        password = self.password if self.password is not None else (
            "" if target.is_local else secrets.get_password(target.user, target.url))
        save = False
        problem = ""
        for _ in range(3):
            if password is None:
                creds = await self.app.push_screen_wait(
                    AskPassword(f"{target.user}@{target.url}", secrets.available(), problem))
                if creds is None:
                    self.status("Not connected")
                    return
                password, save = creds.password, creds.save
            self.status(f"Logging in to {where}…")
            try:
                client = await asyncio.to_thread(_open, target, password)
            except XapiError as e:
                if e.code == "SESSION_AUTHENTICATION_FAILED":
                    problem = e.friendly
                    password = None
                    continue
                self.status(str(e), error=True)
                return
            except XsctlError as e:
                self.status(str(e), error=True)
                return
            why = secrets.set_password(target.user, target.url, password) if (
                save and password) else None
            remember_last(target.profile)
            self.app.pop_screen()
            self.xapp.attach(client)
            if why:
                text = f"The password was not saved: {why}. It will be asked again next time."
                self.app.notify(text, title="Keyring", severity="warning", timeout=12,
                                markup=False)
            return
        self.status("Not connected: the password was refused three times", error=True)
