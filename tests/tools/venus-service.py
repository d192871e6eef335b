#!/usr/bin/python3
"""A Venus OS D-Bus service for the tests, written with dbus-python (not
our GDBus code), the way velib_python's vedbus.py serves one: an object
per path with com.victronenergy.BusItem GetValue / GetText / SetValue, the
root "/" with GetValue (every value, relative keys) and GetItems, invalid
values as an empty int32 array.  shared/reference/victron-dbus.md 1.1-1.2.

    venus-service.py [--legacy] NAME /Path=VALUE ...

VALUE is JSON: a number (an integer goes as int32, as velib sends it), a
string, or null for invalid.  --legacy: a service from before GetItems
(velib before Oct 2021): no GetItems, no ItemsChanged, a PropertiesChanged
on each path instead.

Prints "ready" once it owns NAME, then reads commands on stdin:
    set /Path=VALUE ...   one update; ItemsChanged on "/" with every path
                          in it (dbus-modbus-client's batch), or one
                          PropertiesChanged per path with --legacy
    hang SECONDS          stop answering for that long (a stuck driver)
    quit                  release the name and exit
It also exits when stdin closes (the test died).
"""
import json
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

BUSITEM = "com.victronenergy.BusItem"


def wire(value):
    if value is None:
        return dbus.Array([], signature="i")
    if isinstance(value, bool):
        return dbus.Boolean(value)
    if isinstance(value, int):
        return dbus.Int32(value)
    if isinstance(value, float):
        return dbus.Double(value)
    return dbus.String(value)


def text(value):
    return "---" if value is None else str(value)


def parse(assignments):
    values = {}
    for a in assignments:
        path, _, raw = a.partition("=")
        values[path] = json.loads(raw)
    return values


class Leaf(dbus.service.Object):
    def __init__(self, conn, path, service):
        super().__init__(conn, path)
        self.path = path
        self.service = service

    @dbus.service.method(BUSITEM, out_signature="v")
    def GetValue(self):
        self.service.maybe_hang()
        return wire(self.service.values[self.path])

    @dbus.service.method(BUSITEM, out_signature="s")
    def GetText(self):
        return text(self.service.values[self.path])

    @dbus.service.method(BUSITEM, in_signature="v", out_signature="i")
    def SetValue(self, value):
        return 1  # nothing here is writable

    @dbus.service.signal(BUSITEM, signature="a{sv}")
    def PropertiesChanged(self, changes):
        pass


class Root(dbus.service.Object):
    def __init__(self, conn, service):
        super().__init__(conn, "/")
        self.service = service

    @dbus.service.method(BUSITEM, out_signature="v")
    def GetValue(self):
        self.service.maybe_hang()
        return dbus.Dictionary({p[1:]: wire(v) for p, v in self.service.values.items()}, signature="sv")

    @dbus.service.signal(BUSITEM, signature="a{sa{sv}}")
    def ItemsChanged(self, items):
        pass


class ModernRoot(Root):
    @dbus.service.method(BUSITEM, out_signature="a{sa{sv}}")
    def GetItems(self):
        self.service.maybe_hang()
        return {p: {"Value": wire(v), "Text": text(v)} for p, v in self.service.values.items()}


class Service:
    def __init__(self, name, values, legacy):
        self.conn = dbus.SessionBus(private=True) if "--system" not in sys.argv else dbus.SystemBus(private=True)
        self.values = dict(values)
        self.legacy = legacy
        self.hang_until = 0
        self.root = (Root if legacy else ModernRoot)(self.conn, self)
        self.leaves = {p: Leaf(self.conn, p, self) for p in self.values}
        # the name last, once every path exists (vedbus.py register())
        self.name = dbus.service.BusName(name, self.conn, do_not_queue=True)

    def maybe_hang(self):
        while GLib.get_monotonic_time() < self.hang_until:
            GLib.usleep(10000)

    def set(self, values):
        for path, value in values.items():
            if path not in self.leaves:
                self.leaves[path] = Leaf(self.conn, path, self)
            self.values[path] = value
        if self.legacy:
            for path, value in values.items():
                self.leaves[path].PropertiesChanged({"Value": wire(value), "Text": text(value)})
        else:
            self.root.ItemsChanged({p: {"Value": wire(v), "Text": text(v)} for p, v in values.items()})


def main():
    args = [a for a in sys.argv[1:] if a not in ("--legacy", "--system")]
    service = Service(args[0], parse(args[1:]), "--legacy" in sys.argv)
    loop = GLib.MainLoop()

    def on_stdin(channel, condition):
        line = channel.readline()
        if not line:
            loop.quit()
            return False
        words = line.split()
        if words and words[0] == "set":
            service.set(parse(words[1:]))
        elif words and words[0] == "hang":
            service.hang_until = GLib.get_monotonic_time() + int(float(words[1]) * 1e6)
        elif words and words[0] == "quit":
            loop.quit()
            return False
        print("ok", flush=True)
        return True

    GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                      GLib.IOCondition.IN | GLib.IOCondition.HUP, on_stdin)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    DBusGMainLoop(set_as_default=True)
    main()
