"""A fake of the XDG GlobalShortcuts portal for tests (no desktop here ships a real one):
owns org.freedesktop.portal.Desktop on the bus it is started on, answers CreateSession and
BindShortcuts the Request/Response way, and emits Activated / Deactivated when the test calls
its own org.sarai.FakePortal.Press / Release. Calls are logged as JSON lines to a file.

    python tests/fake_shortcuts_portal.py LOG.jsonl
"""

from __future__ import annotations

import json
import sys

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

XML = """
<node>
  <interface name="org.freedesktop.portal.GlobalShortcuts">
    <method name="CreateSession">
      <arg type="a{sv}" direction="in"/><arg type="o" direction="out"/>
    </method>
    <method name="BindShortcuts">
      <arg type="o" direction="in"/><arg type="a(sa{sv})" direction="in"/>
      <arg type="s" direction="in"/><arg type="a{sv}" direction="in"/>
      <arg type="o" direction="out"/>
    </method>
    <signal name="Activated">
      <arg type="o"/><arg type="s"/><arg type="t"/><arg type="a{sv}"/>
    </signal>
    <signal name="Deactivated">
      <arg type="o"/><arg type="s"/><arg type="t"/><arg type="a{sv}"/>
    </signal>
    <property name="version" type="u" access="read"/>
  </interface>
  <interface name="org.sarai.FakePortal">
    <method name="Press"/>
    <method name="Release"/>
  </interface>
</node>
"""
PATH = "/org/freedesktop/portal/desktop"


def main() -> None:
    log = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115
    node = Gio.DBusNodeInfo.new_for_xml(XML)
    state: dict = {"session": None, "shortcut": None}

    def respond(conn, sender, token, results) -> str:
        path = f"{PATH}/request/{sender.lstrip(':').replace('.', '_')}/{token}"

        def later():
            conn.emit_signal(sender, path, "org.freedesktop.portal.Request", "Response",
                             GLib.Variant("(ua{sv})", (0, results)))
            return False

        GLib.timeout_add(50, later)  # after the reply, as a real portal does
        return path

    def call(conn, sender, path, iface, method, params, invocation) -> None:  # noqa: ARG001
        args = params.unpack()
        log.write(json.dumps({"call": method, "args": repr(args)}) + "\n")
        if method == "CreateSession":
            opts = args[0]
            session = f"{PATH}/session/{sender.lstrip(':').replace('.', '_')}/" \
                      f"{opts['session_handle_token']}"
            state["session"] = session
            invocation.return_value(GLib.Variant("(o)", (respond(
                conn, sender, opts["handle_token"],
                {"session_handle": GLib.Variant("s", session)}),)))
        elif method == "BindShortcuts":
            session, shortcuts, _parent, opts = args
            sid, props = shortcuts[0]
            state["shortcut"] = sid
            state["client"] = sender
            bound = [(sid, {"description": GLib.Variant("s", props["description"]),
                            "trigger_description": GLib.Variant(
                                "s", props.get("preferred_trigger", ""))})]
            invocation.return_value(GLib.Variant("(o)", (respond(
                conn, sender, opts["handle_token"],
                {"shortcuts": GLib.Variant("a(sa{sv})", bound)}),)))
        elif method in ("Press", "Release"):
            name = "Activated" if method == "Press" else "Deactivated"
            conn.emit_signal(None, PATH, "org.freedesktop.portal.GlobalShortcuts", name,
                             GLib.Variant("(osta{sv})", (state["session"], state["shortcut"],
                                                         0, {})))
            invocation.return_value(None)

    def get_property(conn, sender, path, iface, prop):  # noqa: ARG001
        return GLib.Variant("u", 1)

    def on_bus(conn, name) -> None:  # noqa: ARG001
        for iface in node.interfaces:
            conn.register_object(PATH, iface, call, get_property, None)

    def acquired(conn, name) -> None:  # noqa: ARG001
        log.write(json.dumps({"ready": True}) + "\n")

    Gio.bus_own_name(Gio.BusType.SESSION, "org.freedesktop.portal.Desktop",
                     Gio.BusNameOwnerFlags.NONE, on_bus, acquired, None)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
