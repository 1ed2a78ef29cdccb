"""Connecting from the app: the profile list, adding a profile, the first-use
certificate dialog (trusted or refused), the password dialog (a wrong password, then
the right one saved in the keyring), and ``xsctl --profile P`` going straight in."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import Checkbox, Input, Label, OptionList

from tests.ui.harness import Ui, driving, text_of, words_of
from xsctl import secrets
from xsctl.cli import build_parser
from xsctl.commands.app import app_for
from xsctl.config import Config, Profile, cache_dir, known_hosts_file, state_dir
from xsctl.sim import Simulator
from xsctl.ui.modals.trust import AskPassword, TrustCertificate
from xsctl.ui.screens.connect import ConnectScreen
from xsctl.xapi.client import Target, ensure_trusted


def xsctl_app(*argv: str) -> object:
    """The app ``xsctl ARGV`` opens, built by the same code the command uses."""
    return app_for(build_parser().parse_args(list(argv)))


def save_profile(sim: Simulator, name: str = "lab") -> None:
    cfg = Config()
    cfg.add(Profile(name=name, url=sim.url, user=sim.user))
    cfg.save()


def pinned() -> str:
    path = known_hosts_file()
    return path.read_text() if path.exists() else ""


def connect_status(ui: Ui) -> str:
    screen = next(s for s in ui.app.screen_stack if isinstance(s, ConnectScreen))
    return str(screen.query_one("#connect-status", Label).render())


async def until_connect_screen(ui: Ui) -> ConnectScreen:
    screen: ConnectScreen = await ui.until(
        lambda: next((s for s in ui.app.screen_stack if isinstance(s, ConnectScreen)), None),
        what="the connect screen")
    return screen


async def test_first_use_certificate_refused(sim: Simulator) -> None:
    save_profile(sim)
    async with driving(xsctl_app(), sim) as ui:  # type: ignore[arg-type]
        dlg: TrustCertificate = await ui.modal(TrustCertificate)
        text = words_of(dlg)
        assert sim.fingerprint in "".join(text.split())  # folded over two lines
        assert "First connection to 127.0.0.1" in text
        assert ui.app.focused is dlg.query_one("#cancel")  # the safe answer by default
        await ui.press("escape")
        await ui.until(lambda: "certificate was not trusted" in connect_status(ui),
                       what="the refusal")
        assert isinstance(ui.app.screen, ConnectScreen)
        assert sim.fingerprint not in pinned()
        assert sim.live_sessions() == 0  # no password was sent anywhere


async def test_trust_then_wrong_then_right_password_saved_in_the_keyring(
        sim: Simulator) -> None:
    save_profile(sim)
    async with driving(xsctl_app(), sim) as ui:  # type: ignore[arg-type]
        screen = await until_connect_screen(ui)
        profiles = screen.query_one("#profiles", OptionList)
        assert "lab" in str(profiles.get_option_at_index(0).prompt)
        assert f"root@{sim.url}" in str(profiles.get_option_at_index(0).prompt)
        await ui.modal(TrustCertificate)
        await ui.pilot.click("#ok")
        ask: AskPassword = await ui.modal(AskPassword)
        assert f"Password for root@{sim.url}" in text_of(ask.query_one(".dialog-title"))
        assert ask.query_one(Input).password  # typed characters are not shown
        await ui.type("not-it")
        await ui.press("enter")
        await ui.until(lambda: ui.app.screen is not ask, what="the first dialog closed")
        ask2: AskPassword = await ui.modal(AskPassword)
        assert "Login failed for user root: wrong user name or password" in text_of(
            ask2.query_one(".error"))
        assert secrets.get_password(sim.user, sim.url) is None
        await ui.type(sim.password)
        await ui.press("tab", "space")  # "Save in the keyring"
        assert ask2.query_one(Checkbox).value
        await ui.press("enter")  # logs in from the ticked box (it does not untick it)
        main = await ui.until_main()
        await ui.until(lambda: "Demo pool" in text_of(main.query_one("#conn-header")),
                       what="the header")
        assert secrets.get_password(sim.user, sim.url) == sim.password
        assert sim.fingerprint in pinned()
        assert (state_dir() / "last_profile").read_text().strip() == "lab"
        # the password is nowhere on screen, nor in the profile file
        assert sim.password not in ui.screen_text()
        assert sim.password not in Path(Config().path).read_text()

    # next time, plain ``xsctl`` goes straight to the last profile: no question asked
    async with driving(xsctl_app(), sim) as ui:  # type: ignore[arg-type]
        await ui.until_main()
        assert ui.app.client is not None and ui.app.client.target is not None
        assert ui.app.client.target.profile == "lab"


async def test_add_a_profile(sim: Simulator) -> None:
    async with driving(xsctl_app(), sim) as ui:  # type: ignore[arg-type]
        screen = await until_connect_screen(ui)
        # no profile yet: the form is open, on the name
        await ui.until(lambda: not screen.query_one("#add-profile").has_class("hidden"),
                       what="the add form")
        assert ui.app.focused is screen.query_one("#p-name", Input)
        await ui.type("bad name!")
        screen.query_one("#p-url", Input).value = sim.url
        await ui.pilot.click("#p-save")
        await ui.until(lambda: "bad profile name" in connect_status(ui), what="the refusal")
        assert Config().profiles == {}
        screen.query_one("#p-name", Input).focus()
        await ui.press("end", "ctrl+u")
        await ui.type("lab")
        assert screen.query_one("#p-user", Input).value == "root"
        await ui.pilot.click("#p-ro")  # read-only
        await ui.pilot.click("#p-save")
        # saved, listed, and it connects: the first-use dialog comes
        await ui.modal(TrustCertificate)
        saved = Config().profiles["lab"]
        assert (saved.url, saved.user, saved.read_only) == (sim.url, "root", True)
        prompt = str(screen.query_one("#profiles", OptionList).get_option_at_index(0).prompt)
        assert "lab" in prompt and "read-only" in prompt
        await ui.press("escape")


async def test_profile_option_goes_straight_in(sim: Simulator) -> None:
    """``xsctl --profile lab``: pinned before, password in the keyring: no dialog."""
    save_profile(sim, "lab")
    save_profile(sim, "other")  # not the one named
    ensure_trusted(Target(url=sim.url, accept_fingerprint=sim.fingerprint), None)
    secrets.set_password(sim.user, sim.url, sim.password)
    async with driving(xsctl_app("--profile", "lab"), sim) as ui:  # type: ignore[arg-type]
        main = await ui.until_main()
        assert not [s for s in ui.app.screen_stack if isinstance(s, ConnectScreen)]
        assert ui.app.client is not None and ui.app.client.target is not None
        assert ui.app.client.target.profile == "lab"
        await ui.until(lambda: "● live" in text_of(main.query_one("#conn-header")),
                       what="the header")
        assert sim.live_sessions() == 1
    assert sim.live_sessions() == 0  # it logged out on the way out
    # the pool's names are remembered for shell completion
    remembered = json.loads((cache_dir() / "names" / "lab.json").read_text())
    assert "web-01" in remembered["vm"] and "xcp-ng-02" in remembered["host"]


async def test_profile_with_a_password_file(sim: Simulator, tmp_path: Path) -> None:
    """``xsctl --profile lab --password-file F`` on first use: only the certificate is
    asked; the wrong password in the file is reported on the connect screen's dialog."""
    save_profile(sim)
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")
    async with driving(xsctl_app("--profile", "lab", "--password-file", str(pw)),  # type: ignore[arg-type]
                       sim) as ui:
        await ui.modal(TrustCertificate)
        await ui.pilot.click("#ok")
        ask: AskPassword = await ui.modal(AskPassword)
        assert "Login failed" in text_of(ask.query_one(".error"))
        await ui.type(sim.password)
        await ui.press("enter")
        await ui.until_main()
        assert secrets.get_password(sim.user, sim.url) is None  # not asked to save it


async def test_enter_in_any_field_of_a_new_profile_saves_and_connects(sim: Simulator) -> None:
    """The hint says "enter connects": from the User field too, not only the button."""
    async with driving(xsctl_app(), sim) as ui:  # type: ignore[arg-type]
        screen = await until_connect_screen(ui)
        await ui.until(lambda: not screen.query_one("#add-profile").has_class("hidden"),
                       what="the add form")
        await ui.type("lab")
        screen.query_one("#p-url", Input).value = sim.url  # ":" is the palette's key
        screen.query_one("#p-user", Input).focus()
        await ui.press("enter")
        await ui.modal(TrustCertificate)  # saved, and connecting
        assert Config().profiles["lab"].url == sim.url
        await ui.press("escape")


async def test_no_keyring_no_offer_to_save(sim: Simulator) -> None:
    import keyring
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())
    save_profile(sim)
    ensure_trusted(Target(url=sim.url, accept_fingerprint=sim.fingerprint), None)
    async with driving(xsctl_app(), sim) as ui:  # type: ignore[arg-type]
        ask: AskPassword = await ui.modal(AskPassword)
        assert "Save in the keyring" not in words_of(ask)
        assert not ask.query(Checkbox)
        assert "No keyring on this system: the password is asked each time." in words_of(ask)
        await ui.type(sim.password)
        await ui.press("enter")
        await ui.until_main()


async def test_a_keyring_that_refuses_says_so_on_screen(sim: Simulator) -> None:
    """Ticked "save", but the keyring is locked: the user is told, not only the log."""
    import keyring

    from tests.keyring_backend import LockedKeyring

    keyring.set_keyring(LockedKeyring())
    save_profile(sim)
    ensure_trusted(Target(url=sim.url, accept_fingerprint=sim.fingerprint), None)
    async with driving(xsctl_app(), sim) as ui:  # type: ignore[arg-type]
        await ui.modal(AskPassword)
        await ui.type(sim.password)
        await ui.press("tab", "space", "enter")
        await ui.until_main()
        await ui.until_said("The password was not saved: the keyring is locked",
                            severity="warning")
        assert sim.password not in "".join(str(t.message) for t in ui.toasts)


async def test_the_header_says_unencrypted(tmp_path: Path) -> None:
    from tests.conftest import make_sim

    plain = make_sim(tls=False)
    pw = tmp_path / "pw"
    pw.write_text(plain.password)
    pw.chmod(0o600)
    try:
        app = xsctl_app("--url", plain.url, "--insecure-http", "--password-file", str(pw))
        async with driving(app, plain, size=(80, 24)) as ui:  # type: ignore[arg-type]
            main = await ui.until_main()
            await ui.until(lambda: "UNENCRYPTED" in text_of(main.query_one("#conn-header")),
                           what="the header")
    finally:
        plain.stop()
