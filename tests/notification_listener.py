"""A tiny freedesktop notification service for tests: owns org.freedesktop.Notifications on
the session bus it is started on and writes every Notify call as one JSON line to a file.

    python tests/notification_listener.py OUT.jsonl
"""

from __future__ import annotations

import json
import sys

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

XML = """
<node>
  <interface name="org.freedesktop.Notifications">
    <method name="Notify">
      <arg type="s" direction="in"/><arg type="u" direction="in"/>
      <arg type="s" direction="in"/><arg type="s" direction="in"/>
      <arg type="s" direction="in"/><arg type="as" direction="in"/>
      <arg type="a{sv}" direction="in"/><arg type="i" direction="in"/>
      <arg type="u" direction="out"/>
    </method>
    <method name="GetServerInformation">
      <arg type="s" direction="out"/><arg type="s" direction="out"/>
      <arg type="s" direction="out"/><arg type="s" direction="out"/>
    </method>
    <method name="GetCapabilities"><arg type="as" direction="out"/></method>
  </interface>
</node>
"""


def main() -> None:
    out = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115
    node = Gio.DBusNodeInfo.new_for_xml(XML)
    counter = [0]

    def call(conn, sender, path, iface, method, params, invocation) -> None:  # noqa: ARG001
        if method == "Notify":
            app, replaces, icon, summary, body, actions, hints, timeout = params.unpack()
            counter[0] += 1
            nid = replaces or counter[0]
            out.write(json.dumps({"app": app, "id": nid, "replaces": replaces,
                                  "summary": summary, "body": body,
                                  "urgency": hints.get("urgency"), "timeout": timeout}) + "\n")
            invocation.return_value(GLib.Variant("(u)", (nid,)))
        elif method == "GetServerInformation":
            invocation.return_value(GLib.Variant("(ssss)", ("test", "sarai", "1", "1.2")))
        else:
            invocation.return_value(GLib.Variant("(as)", (["body"],)))

    def acquired(conn, name) -> None:  # noqa: ARG001
        out.write(json.dumps({"ready": True}) + "\n")

    def bus(conn, name) -> None:  # noqa: ARG001
        conn.register_object("/org/freedesktop/Notifications", node.interfaces[0], call)

    Gio.bus_own_name(Gio.BusType.SESSION, "org.freedesktop.Notifications",
                     Gio.BusNameOwnerFlags.NONE, bus, acquired, None)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
